<?lsp
-- Streams messages back piece by piece (app.wsStream), so a message
-- larger than any buffer passes without being held whole. Query: id,
-- maxframe (raise the socket's frame limit first).
local id = request:data("id") or "stream"
local maxframe = math.tointeger(tonumber(request:data("maxframe") or ""))
local s = ba.socket.req2sock(request)
if s then
   if maxframe then app.wsMaxframe(s, id, maxframe) end
   s:event(app.wsStream, "s", id)
end
?>
