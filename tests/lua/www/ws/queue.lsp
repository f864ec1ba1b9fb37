<?lsp
-- An "s" WebSocket written from another cosocket and from a timer
-- (app.wsQueue). Query: id, n (messages the cosocket writer sends).
local id = request:data("id") or "queue"
local n = math.tointeger(tonumber(request:data("n") or "")) or 200
local s = ba.socket.req2sock(request)
if s then app.wsQueue(s, id, n) end
?>
