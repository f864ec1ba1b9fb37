<?lsp
-- A protected WebSocket entry page (auth.protect = {"/private/"}): only a
-- request with a user gets here; the echo records who it is.
local id = request:data("id") or "private"
local user = request:user()
local s = ba.socket.req2sock(request)
if s then s:event(app.wsEcho, "s", id, "s", user) end
?>
