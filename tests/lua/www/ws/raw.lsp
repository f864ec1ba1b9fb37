<?lsp
-- req2sock(request, true): the raw connection and the bytes the server had
-- already read past this request. The page answers itself, then hands the
-- connection back to the HTTP server with sock2req. Query mode=:
--   reply     answer "raw:<buffered>"; sock2req(sock)
--   pushback  answer "pushback:<#buffered>"; sock2req(sock, buffered)
local log = app.print
local mode = request:data("mode") or "reply"
local s, buffered = ba.socket.req2sock(request, true)
if not s then
   log("WSRAW id=raw fail=" .. tostring(buffered))
   return
end
buffered = buffered or ""
log(string.format("WSRAW id=raw mode=%s len=%d b64=%s websocket=%s", mode, #buffered,
                  ba.b64encode(buffered), tostring(s:websocket())))
local body = mode == "pushback" and ("pushback:" .. #buffered) or ("raw:" .. buffered)
s:write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #body ..
        "\r\n\r\n" .. body)
if mode == "pushback" then
   ba.socket.sock2req(s, buffered)
else
   ba.socket.sock2req(s)
end
?>
