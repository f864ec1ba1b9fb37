<?lsp
-- Seed Example 5: morph the WebSocket request into an "s" cosocket that
-- runs the echo (app.wsEcho, from tests/lua/ws_server.lua). Query:
-- id=<tag for the records>, maxframe=<n> (sock:maxframe(n) first).
local id = request:data("id") or "echo"
local maxframe = math.tointeger(tonumber(request:data("maxframe") or ""))
local s = ba.socket.req2sock(request)
if s then
   if maxframe then app.wsMaxframe(s, id, maxframe) end
   s:event(app.wsEcho, "s", id, "s")
end
?>
