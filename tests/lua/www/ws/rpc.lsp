<?lsp
-- A blocking WebSocket used by the page itself on its pool thread, RPC
-- style: each message is answered with "rpc:" .. message (same type)
-- until the client closes. Records go to the log through app.print (the
-- page's own print writes to its response, which req2sock made void).
local log = app.print
local id = request:data("id") or "rpc"
local s = ba.socket.req2sock(request)
if not s then return end
log(string.format("WSOPEN id=%s mode=blocking websocket=%s user=nil getsock=%s", id,
                  tostring(s:websocket()), tostring(ba.socket.getsock())))
local n = 0
while true do
   local d, isText, code = s:read(20000)
   if not d then
      log(string.format("WSEND id=%s err=%s code=%s msgs=%d", id, tostring(isText), tostring(code), n))
      break
   end
   n = n + 1
   s:write("rpc:" .. d, isText)
end
s:close()
?>
