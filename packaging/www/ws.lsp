<?lsp
-- The seeds' Example 5: morph the request into a WebSocket and run an echo
-- cosocket on it. The page's environment ends with the request; the
-- coroutine keeps what it needs in its own locals.
local function echo(sock)
   while true do
      local data, isText = sock:read()
      if not data then break end
      sock:write(data, isText)
   end
end
if not request:header("Sec-WebSocket-Key") then
   response:senderror(400, "This page expects a WebSocket upgrade.")
   return
end
local s = ba.socket.req2sock(request)
if s then s:event(echo, "s") end
?>
