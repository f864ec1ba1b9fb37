<?lsp
-- Seed 003, Example 12b, unchanged except the address: 127.0.0.1 and the
-- port of the script's Example 12c server (app.seed12c_port) for localhost:8888
local sock = ba.socket.connect("127.0.0.1",app.seed12c_port)
-- Receive cosocket required, but not used
sock:event(function(sock) trace(sock:read()) end, "s")
while true do
   local ok,status=sock:write"hello"
   trace(ok,status)
   if not ok then
      if "number" == type(status) then
         -- status is now number of bytes in queue
         print("Socket queue full", status,sock:queuelen())
      else
         print("Socket error",status)
         assert("string" == type(status))
      end
      break -- exit
   end
end
?>
