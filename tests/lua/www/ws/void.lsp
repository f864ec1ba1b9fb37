<?lsp
-- After req2sock the page's own response is void: none of what this
-- page writes afterwards may reach the WebSocket's byte stream.
local id = request:data("id") or "void"
local s = ba.socket.req2sock(request)
if s then s:event(app.wsEcho, "s", id, "s") end
print("this text must not be sent")
response:write("nor this")
?>
after the code block: not sent either
