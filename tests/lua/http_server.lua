-- test_http: cosockd.http on 127.0.0.1 (an ephemeral port) serving ROOT,
-- with function pages registered by srv:page. Options for cosockd.http come
-- as name=value arguments (numbers where they parse as integers).
-- Records: "READY main <port>" (srv:port()) once the server listens.
-- Function pages:
--   /echo      "len=<n> fnv=<FNV-1a 32 of the body, 8 hex digits> method=<m>"
--   /n         "n=<?i=>" (pipelining)
--   /stat      "active=<n>" from ba.socket.stat()
--   /fnerror   raises a Lua error (500)
--   /shadowed.html  "from function" (a file of that name exists)
-- Extra arguments, not options:
--   seed12c=PORT  runs seed 003's Example 12c server on 127.0.0.1:PORT,
--                 whose port the page seed12b.lsp reads from app.seed12c_port
--   checkopts=BUSYPORT  checks bad options, a busy port (BUSYPORT, held by
--                 the test) and srv:close(); records "OPTCHECK <name> <result>"
-- ARGS: root [name=value ...]
local root = ...
local opts = {port = 0, intf = "127.0.0.1", root = root}
local extra = {}
for i = 2, select("#", ...) do
   local a = select(i, ...)
   local k, v = a:match("^([%w_]+)=(.*)$")
   if not k then error("bad argument " .. a, 0) end
   v = math.tointeger(tonumber(v)) or v
   if k == "seed12c" or k == "checkopts" then extra[k] = v else opts[k] = v end
end

local function fnv1a(s)
   local h = 0x811c9dc5
   for i = 1, #s do
      h = ((h ~ s:byte(i)) * 0x01000193) & 0xffffffff
   end
   return h
end

local srv, err, why = cosockd.http(opts)
if not srv then error(string.format("cosockd.http: %s %s", tostring(err), tostring(why)), 0) end

srv:page("/echo", function(request, response)
   local body = request:rawrdbuf() or ""
   response:setcontenttype("text/plain")
   response:write(string.format("len=%d fnv=%08x method=%s", #body, fnv1a(body),
                                request:method()))
end)
srv:page("/n", function(request, response)
   response:setcontenttype("text/plain")
   response:write("n=", request:data("i"))
end)
srv:page("/stat", function(request, response)
   local _, active = ba.socket.stat()
   response:setcontenttype("text/plain")
   response:write("active=", active)
end)
srv:page("/fnerror", function(request, response)
   error("deliberate function page failure")
end)
srv:page("/shadowed.html", function(request, response)
   response:setcontenttype("text/plain")
   response:write("from function")
end)

if extra.seed12c then
   -- ---- seed 003, Example 12c, unchanged except the listen address --------
   local function rec(sock)
      sock:read()
      trace"received first message; now stop"
      sock:disable()
   end

   local function accept(s)
      while true do
         local s = s:accept(s)
         if not s then break end
         s:event(rec,"s")
      end
   end

   local s = ba.socket.bind(extra.seed12c, {intf = "127.0.0.1"}) -- was: bind(8888)
   s:event(accept)
   -- -------------------------------------------------------------------------
   seed12c_port = extra.seed12c -- a global: pages see it as app.seed12c_port
end

if extra.checkopts then
   local function raises(name, o)
      local ok, e = pcall(cosockd.http, o)
      trace(string.format("OPTCHECK %s %s", name, ok and "no-error" or "raised"))
   end
   raises("missing_port", {intf = "127.0.0.1"})
   raises("port_not_a_number", {port = "abc", intf = "127.0.0.1"})
   raises("root_not_a_string", {port = 0, intf = "127.0.0.1", root = {}})
   local s2, e2 = cosockd.http{port = extra.checkopts, intf = "127.0.0.1"}
   trace(string.format("OPTCHECK busy_port %s %s", s2 == nil and "nil" or "server", tostring(e2)))
   local s3 = assert(cosockd.http{port = 0, intf = "127.0.0.1"})
   local p3 = s3:port()
   s3:close()
   trace(string.format("OPTCHECK closed_port %d", p3))
end

trace(string.format("READY main %d", srv:port()))
