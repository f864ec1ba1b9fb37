-- test_httpc: require"httpc" and ba.socket.http2sock against the test's
-- loopback servers (tests/integration/test_httpc.py), in every context the
-- client runs in:
--   thread   - a ba.thread job: calls block;
--   cosocket - a ba.socket.event cosocket: the connection is its own
--              socket, promoted in place; calls yield;
--   busy     - a cosocket that already has a connection: calls run as
--              ba.thread jobs while it waits;
--   main     - a timer (the dispatcher thread outside any cosocket): only
--              request() may run there; the response is read by a job.
-- Each check traces "CHECK <context>.<name> ok" or "... FAIL <why>", and
-- "CHECKS DONE" comes at the end.
-- ARGS: httpPort httpsPort wsPort wssPort refusedPort backlogPort caPemFile
--       proxyPort (HTTP, user pu:pp) socksPort (SOCKS5, user su:sp) echoPort
local args = {...}
local httpPort, httpsPort, wsPort, wssPort, refusedPort, backlogPort =
   table.unpack((function()
      local t = {}
      for i = 1, 6 do t[i] = math.tointeger(tonumber(args[i])) end
      return t
   end)())
local caFile = args[7]
local proxyPort, socksPort, echoPort =
   math.tointeger(tonumber(args[8])), math.tointeger(tonumber(args[9])), math.tointeger(tonumber(args[10]))
local lib = require"testlib"
local check = lib.check
local httpc = require"httpc"

local f = assert(io.open(caFile))
local store = ba.create.certstore()
assert(store:addcert(f:read("a")), "the test CA did not load")
f:close()
local shark = ba.create.sharkssl(store)

local function url(path) return "http://127.0.0.1:" .. httpPort .. path end
local function surl(path) return "https://localhost:" .. httpsPort .. path end

local function fmtv(v)
   return type(v) == "string" and string.format("%q", #v > 200 and v:sub(1, 200) .. "..." or v) or tostring(v)
end

-- Raise unless got == want.
local function eq(got, want, what)
   if got ~= want then error(string.format("%s: got %s, want %s", what, fmtv(got), fmtv(want)), 2) end
end

local function truthy(v, what, ...)
   if not v then
      local t = {}
      for i = 1, select("#", ...) do t[#t + 1] = tostring((select(i, ...))) end
      error(what .. " (" .. table.concat(t, ", ") .. ")", 2)
   end
   return v
end

-- GET url; returns status, body, the client (still open)
local function get(u, op, h)
   h = h or httpc.create()
   local req = {url = u}
   for k, v in pairs(op or {}) do req[k] = v end
   local ok, rerr = h:request(req)
   truthy(ok, "request " .. u, rerr)
   local st, err = h:status()
   truthy(st, "status " .. u, err)
   local body, berr = h:read("a")
   truthy(body, "body " .. u, berr)
   return st, body, h
end

-- The echo route answers "METHOD target\n<header lines>\n\n<body>".
local function echoParts(body)
   local head, rest = body:match("^(.-)\n\n(.*)$")
   local reqline = head:match("^[^\n]*")
   local hdrs = {}
   for line in head:gmatch("\n([^\n]*)") do hdrs[#hdrs + 1] = line end
   return reqline, hdrs, rest
end

local function hasLine(list, line)
   for _, l in ipairs(list) do if l == line then return true end end
   return false
end

local BIG = string.rep("0123456789", 30000)
local CHUNKED_BODY = "Wikipedia in\r\n\r\nchunks."

local C = {}
local function add(name, fn) C[#C + 1] = {name = name, fn = fn} end

add("get_length", function()
   local h = httpc.create()
   eq(h:request{url = url("/len")}, true, "request")
   eq(h:status(), 200, "status")
   local v, st = h:header("content-type")
   eq(v, "text/plain", "header(content-type)")
   eq(st, 200, "header's second value")
   local t = h:header()
   eq(t["Content-Length"], "13", "header() as sent")
   eq(t["CONTENT-LENGTH"], "13", "header() looked up case-insensitively")
   eq(h:read("a"), "hello, length", "body")
   eq(h:read("a"), nil, "read after the end")
   eq(h:read(10), nil, "read(n) after the end")
   h:close()
end)

add("chunked", function()
   local st, body, h = get(url("/chunked"))
   eq(st, 200, "status")
   eq(body, CHUNKED_BODY, "body")
   eq(h:header("x-trailer"), nil, "trailer kept out of the headers")
   h:close()
end)

add("close_delimited", function()
   local st, body, h = get(url("/close"))
   eq(st, 200, "status")
   eq(body, "until the connection closes", "body")
   h:close()
end)

add("big_bodies", function()
   local _, body, h = get(url("/big"))
   eq(#body, #BIG, "length-delimited size")
   eq(body == BIG, true, "length-delimited content")
   truthy(h:request{url = url("/bigchunked")}, "request")
   eq(h:status(), 200, "status")
   local parts, n = {}, 0
   while true do
      local d, err = h:read(7000)
      if not d then
         eq(err, nil, "read error")
         break
      end
      truthy(#d > 0 and #d <= 7000, "read(7000) piece size", #d)
      parts[#parts + 1] = d
      n = n + 1
      truthy(n < 10000, "too many pieces")
   end
   eq(table.concat(parts) == BIG, true, "chunked content read in pieces")
   h:close()
end)

add("keepalive_reuse", function()
   local h = httpc.create()
   local conns = {}
   for i = 1, 3 do
      local st, body = get(url("/len"), nil, h)
      eq(st, 200, "status " .. i)
      eq(body, "hello, length", "body " .. i)
      conns[i] = h:header("x-conn")
   end
   eq(conns[2], conns[1], "second request's connection")
   eq(conns[3], conns[1], "third request's connection")
   h:close()
   -- persistent = false: Connection: close, a new connection each time
   local np = httpc.create{persistent = false}
   local _, b1 = get(url("/echo"), nil, np)
   local c1 = np:header("x-conn")
   local _, hdrs = echoParts(b1)
   truthy(hasLine(hdrs, "Connection: close"), "Connection: close sent", table.concat(hdrs, "|"))
   get(url("/len"), nil, np)
   truthy(np:header("x-conn") ~= c1, "persistent=false reused the connection", c1)
   np:close()
end)

add("reuse_after_read", function()
   local h = httpc.create()
   truthy(h:request{url = url("/big")}, "request")
   eq(h:status(), 200, "status")
   local d = h:read(10)
   eq(d, "0123456789", "read(10)")
   local c1 = h:header("x-conn")
   get(url("/len"), nil, h)
   truthy(h:header("x-conn") ~= c1, "a half-read body's connection served again")
   -- read(0) discards the rest, and the connection serves again
   local c2 = h:header("x-conn")
   truthy(h:request{url = url("/big")}, "request")
   eq(h:read(0), true, "read(0)")
   eq(h:read(5), nil, "read after read(0)")
   get(url("/len"), nil, h)
   eq(h:header("x-conn"), c2, "connection after read(0)")
   h:close()
end)

add("redirect_not_followed", function()
   local st, body, h = get(url("/redirect"))
   eq(st, 302, "status")
   eq(h:header("location"), "/len", "location")
   eq(body, "", "body")
   h:close()
end)

add("basic_auth", function()
   local st, body, h = get(url("/auth"), {user = "alice", password = "secret"})
   eq(st, 200, "status with user/password")
   eq(body, "welcome alice", "body")
   st, body = get("http://alice:secret@127.0.0.1:" .. httpPort .. "/auth", nil, h)
   eq(st, 200, "status with URL credentials")
   st = get(url("/auth"), {user = "alice", password = "wrong"}, h)
   eq(st, 401, "status with a wrong password")
   eq(h:header("www-authenticate"), 'Basic realm="test"', "WWW-Authenticate")
   h:close()
end)

add("query_and_headers", function()
   local _, body, h = get(url("/echo?x=1"), {
      query = {a = "x y", b = "\xc3\xa9&", c = 5},
      header = {["X-One"] = "1", ["X-Multi"] = {"a", "b"}},
   })
   local reqline, hdrs = echoParts(body)
   eq(reqline, "GET /echo?x=1&a=x%20y&b=%C3%A9%26&c=5 HTTP/1.1", "request line")
   truthy(hasLine(hdrs, "Host: 127.0.0.1:" .. httpPort), "Host", table.concat(hdrs, "|"))
   truthy(hasLine(hdrs, "X-One: 1"), "X-One", table.concat(hdrs, "|"))
   truthy(hasLine(hdrs, "X-Multi: a") and hasLine(hdrs, "X-Multi: b"), "X-Multi", table.concat(hdrs, "|"))
   -- a URL with only a query gets the path "/"
   _, body = get("http://127.0.0.1:" .. httpPort .. "?q=1", nil, h)
   eq((echoParts(body)), "GET /?q=1 HTTP/1.1", "request line without a path")
   -- host = false: no Host header
   local nh = httpc.create{host = false}
   _, body = get(url("/echo"), nil, nh)
   _, hdrs = echoParts(body)
   for _, l in ipairs(hdrs) do truthy(not l:find("^Host:"), "Host sent with host=false", l) end
   nh:close()
   h:close()
end)

add("head", function()
   local h = httpc.create()
   truthy(h:request{url = url("/len"), method = "HEAD"}, "request")
   eq(h:status(), 200, "status")
   eq(h:header("content-length"), "13", "content-length")
   eq(h:read("a"), "", "HEAD body")
   local c1 = h:header("x-conn")
   local st, body = get(url("/len"), nil, h)
   eq(body, "hello, length", "GET after HEAD")
   eq(h:header("x-conn"), c1, "connection after HEAD")
   h:close()
end)

add("post_bodies", function()
   local h = httpc.create()
   truthy(h:request{url = url("/echo"), method = "POST", size = 11}, "request size=11")
   eq(h:write("hello "), true, "write 1")
   eq(h:write("world"), true, "write 2")
   eq(h:write("!"), nil, "write beyond size")
   eq(h:status(), 200, "status")
   local reqline, hdrs, rbody = echoParts(h:read("a"))
   eq(reqline, "POST /echo HTTP/1.1", "request line")
   truthy(hasLine(hdrs, "Content-Length: 11"), "Content-Length", table.concat(hdrs, "|"))
   eq(rbody, "hello world", "body with size=")
   -- without size=: chunked
   truthy(h:request{url = url("/echo"), method = "POST"}, "request chunked")
   local big = string.rep("z", 5000)
   eq(h:write("abc"), true, "chunk 1")
   eq(h:write(big), true, "chunk 2")
   eq(h:status(), 200, "status")
   reqline, hdrs, rbody = echoParts(h:read("a"))
   truthy(hasLine(hdrs, "Transfer-Encoding: chunked"), "Transfer-Encoding", table.concat(hdrs, "|"))
   eq(rbody, "abc" .. big, "chunked body")
   -- POST with no body at all
   truthy(h:request{url = url("/echo"), method = "PUT"}, "request empty")
   eq(h:status(), 200, "status")
   reqline, hdrs, rbody = echoParts(h:read("a"))
   eq(reqline, "PUT /echo HTTP/1.1", "request line")
   truthy(hasLine(hdrs, "Content-Length: 0"), "Content-Length: 0", table.concat(hdrs, "|"))
   eq(rbody, "", "empty body")
   -- write() on a GET
   truthy(h:request{url = url("/len")}, "request")
   eq(h:write("x"), nil, "write on a GET")
   h:close()
end)

add("interim_100", function()
   local st, body, h = get(url("/continue"))
   eq(st, 200, "status after 100 Continue")
   eq(body, "after continue", "body")
   h:close()
end)

add("cookies_and_pairs", function()
   local h = httpc.create()
   truthy(h:request{url = url("/cookies")}, "request")
   local got = {}
   for name, value, attrs in h:cookie() do got[#got + 1] = {name, value, attrs} end
   eq(#got, 2, "cookies")
   eq(got[1][1] .. "=" .. got[1][2], "a=1", "first cookie")
   eq(got[1][3].path, "/", "first cookie's path")
   eq(got[1][3].httponly, true, "first cookie's HttpOnly")
   eq(got[2][1] .. "=" .. got[2][2], "b=two words", "second cookie")
   eq(got[2][3]["max-age"], "60", "second cookie's Max-Age")
   eq(h:header("x-dup"), "1, 2", "repeated header joined")
   local n, dups = 0, 0
   for name, value in h:headerpairs() do
      n = n + 1
      if name == "X-Dup" then dups = dups + 1 end
   end
   eq(dups, 2, "headerpairs gives each line")
   truthy(n >= 5, "headerpairs count", n)
   h:close()
end)

add("stale_keepalive", function()
   local h = httpc.create()
   local st = get(url("/stale"), nil, h)
   eq(st, 200, "first")
   local c1 = h:header("x-conn")
   st = get(url("/len"), nil, h)
   eq(st, 200, "second, after the server dropped the kept-alive connection")
   truthy(h:header("x-conn") ~= c1, "a new connection")
   h:close()
end)

add("bad_responses", function()
   local h = httpc.create()
   truthy(h:request{url = url("/garbage")}, "request")
   local st, err = h:status()
   eq(st, nil, "garbage status")
   eq(err, "invalidresponse", "garbage")
   eq(select(2, h:read("a")), "invalidresponse", "read after a bad head")
   truthy(h:request{url = url("/truncated")}, "request")
   eq(select(2, h:status()), "invalidresponse", "truncated head")
   truthy(h:request{url = url("/badchunk")}, "request")
   eq(h:status(), 200, "badchunk status")
   eq(select(2, h:read("a")), "invalidresponse", "bad chunk size")
   truthy(h:request{url = url("/shortbody")}, "request")
   eq(h:status(), 200, "shortbody status")
   eq(select(2, h:read("a")), "socketreadfailed", "body cut short")
   -- the client still works
   st = get(url("/len"), nil, h)
   eq(st, 200, "after the failures")
   h:close()
end)

add("timeouts", function()
   local h = httpc.create()
   h:timeout(300)
   local t0 = ba.clock()
   truthy(h:request{url = url("/silent")}, "request")
   local st, err = h:status()
   local dt = ba.clock() - t0
   eq(err, "timeout", "silent server")
   truthy(dt >= 250 and dt < 3000, "timed out after", dt)
   t0 = ba.clock()
   local ok
   ok, err = h:request{url = "http://127.0.0.1:" .. backlogPort .. "/"}
   dt = ba.clock() - t0
   eq(ok, nil, "connect to a full backlog")
   eq(err, "timeout", "connect timeout")
   truthy(dt >= 250 and dt < 3000, "connect timed out after", dt)
   h:close()
end)

add("connect_errors", function()
   local h = httpc.create()
   local ok, err = h:request{url = "http://127.0.0.1:" .. refusedPort .. "/"}
   eq(ok, nil, "refused")
   eq(err, "cannotconnect", "refused")
   eq(select(2, h:status()), "cannotconnect", "status after a failed request")
   for _, u in ipairs{"ftp://127.0.0.1/", "http://", "no url", "http://127.0.0.1:99999/"} do
      ok, err = h:request{url = u}
      eq(err, "invalidurl", "URL " .. u)
   end
   eq(select(2, h:request{}), "invalidurl", "no URL")
   h:close()
end)

add("queries", function()
   local q = httpc.parsequery("a=1&b=x+y&c=%41&a=2&d")
   eq(type(q.a), "table", "repeated name")
   eq(q.a[1] .. "," .. q.a[2], "1,2", "repeated values")
   eq(q.b, "x y", "plus")
   eq(q.c, "A", "escape")
   eq(q.d, "", "no value")
end)

add("socket_queries_close", function()
   local h = httpc.create()
   get(url("/len"), nil, h)
   local addr, port = h:peername()
   eq(addr, "127.0.0.1", "peername")
   eq(port, httpPort, "peer port")
   eq((h:sockname()), "127.0.0.1", "sockname")
   eq(h:close(), true, "close")
   eq(select(2, h:peername()), "invalidsocketcon", "peername after close")
   do
      local c <close> = httpc.create()
      get(url("/len"), nil, c)
      h = c
   end
   eq(select(2, h:peername()), "invalidsocketcon", "peername after <close>")
end)

add("https", function()
   local h = httpc.create{shark = shark}
   local st, body = get(surl("/len"), {trusted = true}, h)
   eq(st, 200, "status")
   eq(body, "hello, length", "body")
   local c1 = h:header("x-conn")
   eq(h:trusted(), true, "trusted()")
   eq(type(h:cipher()), "string", "cipher()")
   eq(type((h:certificate())), "table", "certificate()")
   _, body = get(surl("/chunked"), nil, h)
   eq(body, CHUNKED_BODY, "chunked over TLS")
   eq(h:header("x-conn"), c1, "TLS connection reused")
   h:close()
   -- the default client object does not know the test CA
   h = httpc.create()
   local ok, err = h:request{url = surl("/len"), trusted = true}
   eq(ok, nil, "untrusted")
   eq(err, "sslnottrusted", "untrusted")
   h:close()
end)

-- A raw socket from http2sock echoes through the tunnel: read it blocking
-- on a pool thread, or as a cosocket of its own from a cosocket.
local function rawEcho(s, what)
   local function talk(sock)
      eq(sock:write("through " .. what), true, what .. ": write")
      local got = ""
      while #got < #("through " .. what) do
         local d, err = sock:read(5000)
         truthy(d, what .. ": read", err)
         got = got .. d
      end
      eq(got, "through " .. what, what .. ": echo")
   end
   local me = ba.socket.getsock()
   if not me then
      talk(s)
      s:close()
      return
   end
   local res
   s:event(function(sock)
      res = table.pack(pcall(talk, sock))
      me:enable()
   end, "s")
   if not res then me:disable() end
   if not res[1] then error(res[2], 0) end
end

add("ws_rejected", function()
   local h = httpc.create()
   truthy(h:request{url = "ws://127.0.0.1:" .. httpPort .. "/ws-bad-accept"}, "request")
   eq(h:status(), 101, "status")
   local s, err = ba.socket.http2sock(h)
   eq(s, nil, "a wrong Sec-WebSocket-Accept")
   eq(err, "invalidsocketcon", "error")
   h:close()
   eq(select(2, ba.socket.http2sock(h)), "invalidsocketcon", "closed client")
   eq(select(2, ba.socket.http2sock({})), "invalidsocketcon", "not a client")
   -- no Sec-WebSocket-Accept: the raw socket and what followed the head
   -- (http2sock reads the head itself: in a cosocket it waits inside)
   h = httpc.create()
   truthy(h:request{url = url("/rawconnect")}, "request")
   local left
   s, left = ba.socket.http2sock({raw = h})
   truthy(s, "raw http2sock", left)
   eq(left, "RAW-HELLO", "leftover")
   eq(s:websocket(), false, "raw socket")
   eq(select(2, h:status()), "incorrectuse", "client after http2sock")
   rawEcho(s, "raw http2sock")
end)

add("proxy_http", function()
   local P = {proxy = "127.0.0.1", proxyport = proxyPort, proxyuser = "pu", proxypass = "pp"}
   -- http:// is sent to the proxy with the URL in the request line
   local st, body, h = get(url("/len"), nil, httpc.create(P))
   eq(st, 200, "status")
   local lines = {}
   for l in body:gmatch("[^\n]+") do lines[#lines + 1] = l end
   eq(lines[1], "PROXIED GET http://127.0.0.1:" .. httpPort .. "/len HTTP/1.1", "request line")
   truthy(hasLine(lines, "Proxy-Authorization: Basic cHU6cHA="), "Proxy-Authorization", body)
   truthy(hasLine(lines, "Host: 127.0.0.1:" .. httpPort), "Host", body)
   h:close()
   -- https:// goes through a CONNECT tunnel, TLS to the origin
   local TP = {shark = shark}
   for k, v in pairs(P) do TP[k] = v end
   h = httpc.create(TP)
   st, body = get(surl("/len"), {trusted = true}, h)
   eq(body, "hello, length", "https through the tunnel")
   eq(h:trusted(), true, "the origin's certificate")
   local c1 = h:header("x-conn")
   get(surl("/len"), nil, h)
   eq(h:header("x-conn"), c1, "tunnel kept alive")
   h:close()
   -- no credentials: the proxy says 407
   h = httpc.create{proxy = "127.0.0.1", proxyport = proxyPort, shark = shark}
   local ok, err = h:request{url = surl("/len")}
   eq(err, "prxnotallowed", "CONNECT refused with 407")
   h:close()
   -- the proxy cannot reach the target
   h = httpc.create(TP)
   ok, err = h:request{url = "https://127.0.0.1:" .. refusedPort .. "/"}
   eq(err, "prxgeneral", "CONNECT answered 502")
   h:close()
   -- proxycon: only the tunnel, given out by http2sock
   local CP = {proxycon = true}
   for k, v in pairs(P) do CP[k] = v end
   h = httpc.create(CP)
   ok, err = h:request{url = "http://127.0.0.1:" .. echoPort}
   eq(ok, nil, "proxycon request")
   eq(err, "prxready", "proxycon request")
   eq(select(2, h:status()), "prxready", "proxycon status")
   local s, left = ba.socket.http2sock(h)
   truthy(s, "http2sock of the tunnel", left)
   eq(left, "", "leftover")
   rawEcho(s, "http tunnel")
end)

add("proxy_socks", function()
   local P = {proxy = "127.0.0.1", proxyport = socksPort, socks = true, proxyuser = "su", proxypass = "sp"}
   local st, body, h = get(url("/len"), nil, httpc.create(P))
   eq(body, "hello, length", "http through SOCKS5")
   h:close()
   local TP = {shark = shark}
   for k, v in pairs(P) do TP[k] = v end
   h = httpc.create(TP)
   st, body = get(surl("/chunked"), {trusted = true}, h)
   eq(body, CHUNKED_BODY, "https through SOCKS5")
   h:close()
   h = httpc.create(P)
   local ok, err = h:request{url = "http://127.0.0.1:" .. refusedPort .. "/"}
   eq(err, "prxrefused", "target refused")
   h:close()
   h = httpc.create{proxy = "127.0.0.1", proxyport = socksPort, socks = true, proxyuser = "su", proxypass = "no"}
   ok, err = h:request{url = url("/len")}
   eq(err, "prxnotallowed", "wrong password")
   h:close()
   local CP = {proxycon = true}
   for k, v in pairs(P) do CP[k] = v end
   h = httpc.create(CP)
   eq(select(2, h:request{url = "http://localhost:" .. echoPort}), "prxready", "proxycon")
   rawEcho(ba.socket.http2sock(h), "socks tunnel")
end)

-- ---- WebSockets: an exchange over a client socket -------------------------

-- Exchange messages over ws (readable by the caller: a blocking socket on
-- a pool thread, or the running cosocket's own). Raises on a mismatch.
local function wsTalk(ws, label)
   eq(ws:websocket(), true, label .. ": websocket()")
   local msgs = {
      {"hello", true}, {"\0\1\2\255 binary", false}, {string.rep("t", 1000), true},
      {"h\xc3\xa9llo w\xc3\xb6rld", true}, {string.rep("\7", 20000), false},
   }
   for i, m in ipairs(msgs) do
      truthy(ws:write(m[1], m[2]), label .. ": write " .. i)
      local parts, isText = {}, nil
      repeat
         local d, t, got, total = ws:read(5000)
         truthy(d, label .. ": read " .. i, t, got)
         parts[#parts + 1] = d
         isText = t
      until not got or got == total
      eq(table.concat(parts), m[1], label .. ": echo " .. i)
      eq(isText, m[2], label .. ": frame type " .. i)
   end
   eq(ws:close(), true, label .. ": close")
end

-- Open a WebSocket to u; returns the socket and the leftover.
local function wsOpen(u, op)
   local h = httpc.create()
   local req = {url = u}
   for k, v in pairs(op or {}) do req[k] = v end
   local ok, rerr = h:request(req)
   truthy(ok, "ws request", rerr)
   eq(h:status(), 101, "ws status")
   local s, left = ba.socket.http2sock(h)
   truthy(s, "http2sock", left)
   return s, left
end

local WS = "ws://127.0.0.1:" .. tostring(wsPort) .. "/echo"
local WSS = "wss://localhost:" .. tostring(wssPort) .. "/echo"

-- In a cosocket: run body(ws) as the "s" cosocket of ws and wait for it.
local function inEvent(ctxName, ws, body)
   local me = ba.socket.getsock()
   local res
   ws:event(function(s)
      res = table.pack(pcall(body, s))
      me:enable()
   end, "s")
   if not res then me:disable() end
   if not res[1] then error(res[2], 0) end
end

-- ---- running the checks in each context ------------------------------------

local steps = lib.steps()
local function nextStep() steps:next() end

local function runAll(ctx)
   for _, c in ipairs(C) do
      local ok, err = pcall(c.fn, ctx)
      check(ctx .. "." .. c.name, ok, err)
   end
end

-- thread: the checks, Example 2's pattern (blocking reads on the job) and
-- Example 14's (the socket becomes an "s" cosocket)
steps:job(function() runAll("thread") end)
steps:job(function()
   local ok, err = pcall(function()
      local s, left = wsOpen(WS)
      wsTalk(s, "ws")
   end)
   check("thread.ws_blocking", ok, err)
   ok, err = pcall(function()
      local s = wsOpen(WSS, {shark = shark, trusted = true})
      wsTalk(s, "wss")
   end)
   check("thread.wss_blocking", ok, err)
   ok, err = pcall(function()
      -- the server sends a frame together with its 101
      local s, left = wsOpen("ws://127.0.0.1:" .. httpPort .. "/ws-greet")
      eq(left, nil, "leftover given to the frame layer")
      local d, t = s:read(5000)
      eq(d, "greeting", "frame sent with the 101")
      eq(t, true, "frame type")
      eq(s:write("masked?", true), true, "write")
      eq(s:read(5000), "masked? ok", "the server read our masked frame")
      s:close()
   end)
   check("thread.ws_leftover", ok, err)
end)
steps:add(function()
   ba.thread.run(function()
      local ok, s = pcall(wsOpen, WS)
      if not ok then
         check("thread.ws_event", false, s)
         return nextStep()
      end
      s:event(function(ws)
         check("thread.ws_event", pcall(wsTalk, ws, "ws"))
         nextStep()
      end, "s")
   end)
end)

-- cosocket: a socket-less cosocket, whose socket the connection becomes
steps:add(function()
   ba.socket.event(function(me)
      runAll("cosocket")
      check("cosocket.ws_event", pcall(function()
         local s = wsOpen(WS)
         inEvent("cosocket", s, function(ws) wsTalk(ws, "ws") end)
      end))
      check("cosocket.wss_event", pcall(function()
         local s = wsOpen(WSS, {shark = shark})
         inEvent("cosocket", s, function(ws) wsTalk(ws, "wss") end)
      end))
      nextStep()
   end)
end)

-- busy: a cosocket with a connection of its own
steps:add(function()
   ba.socket.event(function(me)
      local s, err = ba.socket.connect("127.0.0.1", httpPort)
      if s ~= me then
         check("busy.setup", false, err)
         return nextStep()
      end
      runAll("busy")
      check("busy.ws_event", pcall(function()
         local ws = wsOpen(WS)
         inEvent("busy", ws, function(w) wsTalk(w, "ws") end)
      end))
      check("busy.own_socket_intact", select(2, me:state()) == true)
      me:close()
      nextStep()
   end)
end)

-- main: request() from a timer, the rest on a pool thread
steps:add(function()
   local h = httpc.create()
   local ok, err = h:request{url = url("/len")}
   check("main.request", ok == true, err)
   local rok = pcall(h.status, h)
   check("main.status_refused", not rok)
   ba.thread.run(function()
      check("main.status_on_thread", pcall(function()
         local st, body = nil, nil
         -- the head was not read on the timer; the job reads it
         eq(h:status(), 200, "status")
         eq(h:read("a"), "hello, length", "body")
         h:close()
      end))
      nextStep()
   end)
end)

-- every client is closed or garbage: nothing stays open
steps:add(function()
   collectgarbage()
   collectgarbage()
   trace("HTTPC IDLE")
   nextStep()
end)

-- The test counts our descriptors, then connects to say "go"; the listener
-- keeps the daemon up after the checks until it is stopped.
local ls = lib.listen(0)
ls:event(function(l)
   local s = l:accept()
   if s then s:close() end
   nextStep()
   while l:accept() do end
end)
trace("HTTPC READY")
