<?lsp
-- test_http: a protected WebSocket entry page (seed: "WebSocket
-- authentication"); it echoes one message prefixed with the user
local user = tostring(request:user())
if request:header("Sec-WebSocket-Key") then
   local s = ba.socket.req2sock(request)
   if s then
      s:event(function(s)
         local d = s:read(5000)
         if d then s:write(user .. ":" .. d, true) end
         s:close()
      end, "s")
   end
else
   print("ws entry user=" .. user)
end
?>
