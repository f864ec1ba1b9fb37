-- test_httpc: httpc from pages, which run on the HTTP server's pool threads
-- where it blocks: seed 003's Example 2 (wsecho.lsp, written into ROOT by
-- the test: a WebSocket round trip per request, RPC style) and a function
-- page fetching a URL over http:// or https://.
--   /fetch?url=U  the body of U (a client object kept across requests,
--                 so the connection is reused), or "ERROR <err>"
-- Globals read by wsecho.lsp (as app.*): wsurl.
-- ARGS: root wsUrl caPemFile
local root, wsUrl, caFile = ...
wsurl = wsUrl

local f = assert(io.open(caFile))
local store = ba.create.certstore()
assert(store:addcert(f:read("a")))
f:close()
local shark = ba.create.sharkssl(store)

local srv, err, why = cosockd.http{port = 0, intf = "127.0.0.1", root = root}
if not srv then error(string.format("cosockd.http: %s %s", tostring(err), tostring(why)), 0) end

local client = require"httpc".create{shark = shark}
srv:page("/fetch", function(request, response)
   response:setcontenttype("text/plain")
   local ok, e = client:request{url = request:data("url"), trusted = true}
   local body
   if ok then body, e = client:read("a") end
   if not body then
      response:write("ERROR ", tostring(e))
      return
   end
   response:write(body, " conn=", tostring(client:header("x-conn")))
end)
trace("PAGES READY")
