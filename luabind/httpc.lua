-- httpc.lua - require"httpc" (BA-API.md §9): an HTTP/1.1 client for
-- http://, https://, ws:// and wss:// URLs, embedded in the binary and
-- loaded by luabind/httpc.c, which passes the private table P (the
-- parsers of ws/http.h, the WebSocket accept key, the caller's context).
--
-- It is written on ba.socket, so it runs wherever sockets do:
--  * on a pool thread (a ba.thread job, a page) its calls block;
--  * in a cosocket they yield. The connection is the cosocket's own socket
--    when that one is free (a ba.socket.event cosocket: connect promotes it
--    in place), and stays so until close() or a request elsewhere; a
--    cosocket that has a connection of its own has the call run as a
--    ba.thread job meanwhile, waiting with disable()/enable(). A client
--    may move between contexts: a request where the kept connection cannot
--    be read (another cosocket's) closes it and opens a new one;
--  * top-level code and timers may send a request (connect blocks there,
--    as ba.socket.connect does), but reading the response needs one of the
--    above.
--
-- A request is sent by request(); the response head is read by the first
-- status(), header*(), cookie() or read(). A request body is framed by
-- size= (Content-Length) or, for POST/PUT/PATCH without size=, by write()s
-- sent chunked (none: Content-Length: 0). Response bodies end by
-- Content-Length, the chunked coding or the connection's end; read(n)
-- returns at most n bytes (a piece of what has arrived), read("a") the
-- rest, read(0) drops it; nil at the end. The connection is kept for the
-- next request to the same place once a response was read to its end (and
-- neither side said close); a kept connection the server has dropped is
-- replaced once, transparently, for a request without a body. Connect and
-- each read time out after timeout(ms) (default 20 s; 0: never). Redirects
-- are not followed (http.lua-style wrappers do that).
--
-- Proxies (create{proxy=, proxyport=, socks=, proxycon=, proxyuser=,
-- proxypass=}): http:// through an HTTP proxy names the URL in the request
-- line; https://, ws://, wss:// and proxycon go through a CONNECT tunnel,
-- socks through SOCKS5 (RFC 1928/1929). With proxycon, request() only
-- opens the tunnel and returns nil, "prxready"; http2sock gives it out.
--
-- Departures from BAS: ws:// and wss:// send a random Sec-WebSocket-Key
-- (BAS sends a fixed one), and http2sock checks the whole
-- Sec-WebSocket-Accept value (BAS only its first two characters).

local P = ...
local ba = ba
local connect, getsock = ba.socket.connect, ba.socket.getsock
local b64encode, rndbs, urlencode = ba.b64encode, ba.rndbs, ba.urlencode
local threadrun, sharkclient = ba.thread.run, ba.sharkclient
local tconcat, tpack, tunpack, tsort = table.concat, table.pack, table.unpack, table.sort
local fmt, char, min, tointeger = string.format, string.char, math.min, math.tointeger
local type, tostring, tonumber, pairs, ipairs = type, tostring, tonumber, pairs, ipairs
local error, pcall, select = error, pcall, select
local setmetatable, getmetatable = setmetatable, getmetatable

local DEFAULT_TIMEOUT = 20000 -- ms, for connect and for each read
local READ_SIZE = 16384       -- read() without a size returns at most this

local H = {}
local MT = {__index = H, __name = "httpc"}

-- The end of a stream, as the socket reports it.
local EOF = {socketreadfailed = true, socketclosed = true, sslclosenotify = true}
-- Methods whose body (when no size= is given) is sent chunked by write().
local BODY_METHODS = {POST = true, PUT = true, PATCH = true}

---------------------------------------------------------------------------
-- Connections

local function connected(s)
   return s and select(2, s:state())
end

local function closeconn(h)
   local s = h.sock
   h.sock, h.owner, h.connkey, h.buf, h.reusable = nil, nil, nil, "", false
   if s then s:close() end
end

-- Whether code running in ctx may do I/O on h.sock: a socket a cosocket
-- made (in place) belongs to that cosocket; any other one is a blocking
-- socket, for pool threads (and writes from top-level code).
local function usable(h, ctx)
   if h.owner then return ctx == "cosocket" and getsock() == h.owner end
   return ctx ~= "cosocket"
end

local function send(h, data)
   local ok, err = h.sock:write(data)
   if not ok then return nil, type(err) == "string" and err or "socketwritefailed" end
   return true
end

-- Read more of the stream into h.buf. true | nil, err, why
local function fill(h)
   local d, err, why = h.sock:read(h.tmo > 0 and h.tmo or nil)
   if not d then return nil, err, why end
   h.buf = h.buf .. d
   return true
end

-- The next n bytes of the stream. string | nil, err
local function need(h, n)
   while #h.buf < n do
      local ok, err = fill(h)
      if not ok then return nil, err end
   end
   local d = h.buf:sub(1, n)
   h.buf = h.buf:sub(n + 1)
   return d
end

---------------------------------------------------------------------------
-- Proxies: a tunnel to host:port through an HTTP proxy (CONNECT) or a
-- SOCKS5 one; plain http:// through an HTTP proxy needs none.

-- "host:port", IPv6 literals in brackets; the default port left out when
-- dflt is given.
local function hostport(host, port, dflt)
   if host:find(":", 1, true) then host = "[" .. host .. "]" end
   if port == dflt then return host end
   return host .. ":" .. port
end

local function proxyauth(h)
   if not h.proxyuser then return "" end
   return "Proxy-Authorization: Basic " .. b64encode(h.proxyuser .. ":" .. (h.proxypass or "")) .. "\r\n"
end

local function httpconnect(h, host, port)
   local hp = hostport(host, port)
   local ok, err, why = send(h, "CONNECT " .. hp .. " HTTP/1.1\r\nHost: " .. hp .. "\r\n" .. proxyauth(h) .. "\r\n")
   if not ok then return nil, err, why end
   while true do
      local code, hl = P.parseresponse(h.buf)
      if code == false then return nil, "prxgeneral" end
      if code then
         h.buf = h.buf:sub(hl + 1)
         if code >= 200 and code < 300 then return true end
         if code >= 200 then return nil, (code == 407 or code == 403) and "prxnotallowed" or "prxgeneral" end
      else
         ok, err, why = fill(h)
         if not ok then return nil, err, why end
      end
   end
end

-- SOCKS5 (RFC 1928, 1929) reply codes
local SOCKS_ERR = {"prxgeneral", "prxnotallowed", "prxnetwork", "prxhost", "prxrefused", "prxttl",
                   "prxcommand", "prxaddress"}

local function socks5(h, host, port)
   local user, pass = h.proxyuser, h.proxypass or ""
   if #host > 255 or (user and (#user > 255 or #pass > 255)) then return nil, "prxaddress" end
   local ok, err, why = send(h, user and "\5\2\0\2" or "\5\1\0")
   if not ok then return nil, err, why end
   local r
   r, err = need(h, 2)
   if not r then return nil, err end
   if r:byte(1) ~= 5 then return nil, "prxnotcompat" end
   local method = r:byte(2)
   if method == 2 and user then
      ok, err = send(h, "\1" .. char(#user) .. user .. char(#pass) .. pass)
      if not ok then return nil, err end
      r, err = need(h, 2)
      if not r then return nil, err end
      if r:byte(2) ~= 0 then return nil, "prxnotallowed" end
   elseif method ~= 0 then
      return nil, "prxnotallowed"
   end
   local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
   local addr = a and "\1" .. char(tonumber(a) & 255, tonumber(b) & 255, tonumber(c) & 255, tonumber(d) & 255)
      or "\3" .. char(#host) .. host
   ok, err = send(h, "\5\1\0" .. addr .. char(port >> 8, port & 255))
   if not ok then return nil, err end
   r, err = need(h, 4)
   if not r then return nil, err end
   if r:byte(1) ~= 5 then return nil, "prxnotcompat" end
   if r:byte(2) ~= 0 then return nil, SOCKS_ERR[r:byte(2)] or "prxunknown" end
   local atyp, alen = r:byte(4), nil
   if atyp == 1 then
      alen = 4
   elseif atyp == 4 then
      alen = 16
   else
      r, err = need(h, 1)
      if not r then return nil, err end
      alen = r:byte(1)
   end
   r, err = need(h, alen + 2) -- the address the proxy bound: not needed
   if not r then return nil, err end
   return true
end

-- Open (or keep) the connection for target t: {host, port (where to
-- connect), shark (TLS to the origin), via (a tunnel: {host, port} of the
-- origin), key (what a kept connection must match)}.
-- Returns true, reused | nil, err, why.
local function open(h, ctx, t)
   if h.sock and (h.connkey ~= t.key or not h.reusable or not usable(h, ctx) or not connected(h.sock)) then
      closeconn(h)
   end
   if h.sock then return true, true end
   local s, err, why = connect(t.host, t.port, {
      timeout = h.tmo > 0 and h.tmo or nil, intf = h.intf, ipv6 = h.ipv6, shark = not t.via and t.shark or nil})
   if not s then return nil, err, why end
   h.sock, h.connkey, h.reusable, h.buf = s, t.key, true, ""
   h.owner = ctx == "cosocket" and s or nil
   if t.via then
      local ok
      ok, err, why = (h.socks and socks5 or httpconnect)(h, t.via.host, t.via.port)
      if ok and t.shark then
         P.sethost(s, t.via.host)
         ok, err, why = s:upgrade(t.shark)
         if ok == false then err = "sslhandshake" end
      end
      if not ok then
         closeconn(h)
         return nil, err, why
      end
   end
   return true, false
end

---------------------------------------------------------------------------
-- Exchange state

local function reset(h)
   h.state, h.err, h.why = nil, nil, nil
   h.code, h.reason, h.hdrs, h.hmap, h.htable = nil, nil, nil, nil, nil
   h.bodykind, h.remaining, h.dech, h.decoded, h.dechdone, h.eofseen = nil, nil, nil, nil, nil, nil
   h.body, h.replay, h.reused, h.retried, h.wskey, h.method, h.target, h.lazyhead = nil, nil, nil, nil, nil, nil, nil, nil
end

-- The exchange failed: remember why, drop the connection.
local function fail(h, err, why)
   h.state, h.err, h.why = "failed", err, why
   closeconn(h)
   return nil, err, why
end

local function bodydone(h)
   h.state = "done"
end

---------------------------------------------------------------------------
-- Requests

local function checkline(what, s)
   if s:find("[\r\n]") then error("httpc: " .. what .. " contains a line break", 5) end
   return s
end

local function encodequery(q)
   if type(q) == "string" then return q end
   local keys = {}
   for k in pairs(q) do keys[#keys + 1] = tostring(k) end
   tsort(keys)
   local out = {}
   for _, k in ipairs(keys) do
      local v = q[k]
      if v == nil then v = q[tointeger(tonumber(k)) or k] end
      local list = type(v) == "table" and v or {v}
      for _, x in ipairs(list) do
         out[#out + 1] = urlencode(k) .. "=" .. urlencode(tostring(x))
      end
   end
   return tconcat(out, "&")
end

-- Send the head (with lines added for the body), reconnecting once when a
-- kept-alive connection turns out to be gone.
local function sendhead(h, ctx, head)
   local ok, err, why = send(h, head)
   if not ok and h.reused then
      closeconn(h)
      ok, err, why = open(h, ctx, h.target)
      h.reused = false
      if ok then ok, err, why = send(h, head) end
   end
   if not ok then return fail(h, err, why) end
   return true
end

local function request(h, ctx, op)
   if type(op) ~= "table" then error("httpc: request: option table expected", 4) end
   -- the connection serves again only after a cleanly finished exchange
   if h.state ~= nil and h.state ~= "done" then h.reusable = false end
   reset(h)
   h.state = "failed"
   local u = type(op.url) == "string" and P.parseurl(op.url)
   if not u then
      h.err = "invalidurl"
      return nil, "invalidurl"
   end
   local method = u.websocket and "GET" or (op.method and tostring(op.method):upper() or "GET")
   checkline("method", method)
   local path = u.path
   if path:byte(1) == 63 then path = "/" .. path end -- "?q" -> "/?q"
   if op.query then
      local q = encodequery(op.query)
      if q ~= "" then path = path .. (path:find("?", 1, true) and "&" or "?") .. q end
   end
   local given = {}
   -- through an HTTP proxy without a tunnel, the request line names the URL
   local plainproxy = h.proxy and not (h.socks or h.proxycon or u.tls or u.websocket)
   local lines = {method .. " " .. (plainproxy and u.scheme .. "://" .. hostport(u.host, u.port, 80) or "")
                  .. path .. " HTTP/1.1"}
   if op.header ~= nil then
      if type(op.header) ~= "table" then error("httpc: request: header must be a table", 4) end
      for k, v in pairs(op.header) do
         local name = checkline("header name", tostring(k))
         given[name:lower()] = true
         for _, x in ipairs(type(v) == "table" and v or {v}) do
            lines[#lines + 1] = name .. ": " .. checkline("header " .. name, tostring(x))
         end
      end
   end
   if h.sendhost and not given.host then
      lines[#lines + 1] = "Host: " .. hostport(u.host, u.port, u.tls and 443 or 80)
   end
   if plainproxy and h.proxyuser and not given["proxy-authorization"] then
      lines[#lines + 1] = proxyauth(h):sub(1, -3)
   end
   local user = op.user or u.user
   if user and not given.authorization then
      lines[#lines + 1] = "Authorization: Basic " .. b64encode(tostring(user) .. ":" .. tostring(op.password or u.password or ""))
   end
   local wskey
   if u.websocket then
      wskey = b64encode(rndbs(16))
      if not given.upgrade then lines[#lines + 1] = "Upgrade: websocket" end
      if not given.connection then lines[#lines + 1] = "Connection: Upgrade" end
      lines[#lines + 1] = "Sec-WebSocket-Key: " .. wskey
      if not given["sec-websocket-version"] then lines[#lines + 1] = "Sec-WebSocket-Version: 13" end
   elseif not h.persistent and not given.connection then
      lines[#lines + 1] = "Connection: close"
   end
   local size = op.size
   if size ~= nil then
      size = tointeger(size)
      if not size or size < 0 then error("httpc: request: size must be a non-negative integer", 4) end
      if not given["content-length"] then lines[#lines + 1] = "Content-Length: " .. size end
   end

   local shark
   if u.tls then shark = op.shark or h.shark or sharkclient() end
   local t = {host = u.host, port = u.port, shark = shark,
              key = u.host .. "\0" .. u.port .. "\0" .. (shark and tostring(shark) or "")}
   if h.proxy then
      t.host, t.port = h.proxy, h.proxyport
      if not plainproxy then t.via = {host = u.host, port = u.port} end
      t.key = t.key .. "\0" .. (t.via and "tunnel" or "proxy")
   end
   if h.proxycon then h.reusable = false end -- a tunnel only: never kept
   local ok, reused, why = open(h, ctx, t)
   if not ok then
      h.err, h.why = reused, why
      return nil, reused, why
   end
   h.reused = reused
   if h.proxycon then
      -- proxycon: the tunnel is what was asked for; http2sock gives it out
      h.state, h.reusable = "tunnel", false
      return nil, "prxready"
   end
   local err
   if shark and op.trusted and not h.sock:trusted(u.host) then
      closeconn(h)
      h.err = "sslnottrusted"
      return nil, "sslnottrusted"
   end
   h.target, h.method, h.wskey, h.host = t, method, wskey, u.host
   local head = tconcat(lines, "\r\n") .. "\r\n"
   if not size and BODY_METHODS[method] and not given["transfer-encoding"] and not given["content-length"] then
      -- framed by what comes next: write() (chunked) or status() (empty)
      h.lazyhead, h.state = head, "lazy"
      return true
   end
   head = head .. "\r\n"
   ok, err, why = sendhead(h, ctx, head)
   if not ok then return nil, err, why end
   if size and size > 0 then
      h.body, h.state = {remaining = size}, "body"
   else
      h.replay, h.state = head, "sent"
   end
   return true
end

-- Finish the request (its body) and read the response head.
-- true | nil, err, why
local function readhead(h, ctx)
   local st = h.state
   if st == "failed" then return nil, h.err, h.why end
   if st == nil then return nil, "incorrectuse" end
   if st == "tunnel" then return nil, "prxready" end
   if st == "lazy" then
      local head = h.lazyhead .. "Content-Length: 0\r\n\r\n"
      h.lazyhead = nil
      local ok, err, why = sendhead(h, ctx, head)
      if not ok then return nil, err, why end
      h.replay, h.state = head, "sent"
   elseif st == "body" then
      if h.body.chunked then
         local ok, err, why = send(h, "0\r\n\r\n")
         if not ok then return fail(h, err, why) end
      end
      h.state = "sent"
   elseif st ~= "sent" then
      return true
   end
   if ctx == "main" then
      error("httpc: the response cannot be read on the dispatcher thread outside a cosocket "
            .. "(top-level code, a timer): read it in a cosocket or a ba.thread job", 0)
   end
   if not usable(h, ctx) then return nil, "incorrectuse" end
   while true do
      local code, hl, hdrs, clen, chunked, ka, reason = P.parseresponse(h.buf)
      if code == false then return fail(h, "invalidresponse") end
      if code then
         h.buf = h.buf:sub(hl + 1)
         if code >= 200 or code == 101 then
            h.code, h.reason, h.hdrs = code, reason, hdrs
            local kind
            if h.method == "HEAD" or code == 204 or code == 304 or code < 200 then
               kind = "none"
            elseif chunked then
               kind, h.dech, h.decoded = "chunked", P.dechunker(), ""
            elseif clen >= 0 then
               kind, h.remaining = "length", clen
            else
               kind, ka = "close", false
            end
            h.bodykind = kind
            h.reusable = h.reusable and ka and h.persistent and code ~= 101
            h.replay = nil
            h.state = "resp"
            if kind == "none" or (kind == "length" and clen == 0) then bodydone(h) end
            return true
         end
         -- an interim 1xx (100 Continue, 102, 103): the real one follows
      else
         local ok, err, why = fill(h)
         if not ok then
            if h.buf == "" and h.reused and h.replay and not h.retried and EOF[err] then
               -- a kept-alive connection the server had closed: once more
               h.retried = true
               closeconn(h)
               local again
               again, err, why = open(h, ctx, h.target)
               if not again then return fail(h, err, why) end
               h.reused = false
               again, err, why = send(h, h.replay)
               if not again then return fail(h, err, why) end
            else
               if h.buf ~= "" and EOF[err] then err, why = "invalidresponse", nil end
               return fail(h, err, why)
            end
         end
      end
   end
end

-- The next piece of the body, at most max bytes: data | nil (the end) | nil, err
local function readbody(h, max)
   local kind = h.bodykind
   while true do
      if h.state ~= "resp" then
         if h.state == "failed" then return nil, h.err, h.why end
         return nil
      end
      if kind == "length" then
         local n = #h.buf
         if n > 0 then
            n = min(n, h.remaining, max)
            local d = h.buf:sub(1, n)
            h.buf = h.buf:sub(n + 1)
            h.remaining = h.remaining - n
            if h.remaining == 0 then bodydone(h) end
            return d
         end
         local ok, err, why = fill(h)
         if not ok then return fail(h, err, why) end
      elseif kind == "chunked" then
         local dec = h.decoded
         if #dec > 0 then
            local d = dec:sub(1, max)
            h.decoded = dec:sub(max + 1)
            return d
         end
         if h.dechdone then
            bodydone(h)
         else
            if h.buf == "" then
               local ok, err, why = fill(h)
               if not ok then return fail(h, err, why) end
            end
            local d, rest = P.dechunk(h.dech, h.buf)
            if d == false then return fail(h, "invalidresponse") end
            h.decoded, h.buf = d, rest or ""
            if rest then h.dechdone = true end
         end
      else -- until the connection closes
         if h.buf ~= "" then
            local d = h.buf:sub(1, max)
            h.buf = h.buf:sub(max + 1)
            return d
         end
         local d, err, why = h.sock:read(h.tmo > 0 and h.tmo or nil)
         if d then
            h.buf = d
         elseif EOF[err] then
            h.reusable = false
            bodydone(h)
         else
            return fail(h, err, why)
         end
      end
   end
end

local function status(h, ctx)
   local ok, err, why = readhead(h, ctx)
   if not ok then return nil, err, why end
   return h.code
end

local function read(h, ctx, n)
   local ok, err, why = readhead(h, ctx)
   if not ok then return nil, err, why end
   if n == 0 then
      while true do
         local d
         d, err, why = readbody(h, 1 << 20)
         if not d then
            if err then return nil, err, why end
            h.eofseen = true
            return true
         end
      end
   end
   if n == "a" or n == "*a" then
      if h.eofseen then return nil end
      local parts = {}
      while true do
         local d
         d, err, why = readbody(h, 1 << 30)
         if not d then
            if err then return nil, err, why end
            break
         end
         parts[#parts + 1] = d
      end
      h.eofseen = true
      return tconcat(parts)
   end
   local max = n == nil and READ_SIZE or tointeger(n)
   if not max or max < 0 then error("httpc: read: a size, \"a\" or 0 expected", 4) end
   local d
   d, err, why = readbody(h, max)
   if not d then
      if err then return nil, err, why end
      h.eofseen = true
      return nil
   end
   return d
end

local function write(h, ctx, data)
   if type(data) ~= "string" then data = tostring(data) end
   if h.state == "lazy" then
      local ok, err, why = sendhead(h, ctx, h.lazyhead .. "Transfer-Encoding: chunked\r\n\r\n")
      h.lazyhead = nil
      if not ok then return nil, err, why end
      h.body, h.state = {chunked = true}, "body"
   end
   if h.state ~= "body" then return nil, "incorrectuse" end
   if not usable(h, ctx) then return nil, "incorrectuse" end
   local n = #data
   if n == 0 then return true end
   local ok, err, why
   if h.body.chunked then
      ok, err, why = send(h, fmt("%X\r\n", n) .. data .. "\r\n")
   else
      if n > h.body.remaining then return nil, "incorrectuse" end
      h.body.remaining = h.body.remaining - n
      ok, err, why = send(h, data)
      if ok and h.body.remaining == 0 then h.state = "sent" end
   end
   if not ok then return fail(h, err, why) end
   return true
end

---------------------------------------------------------------------------
-- Where a call runs (see the head comment)

-- Run fn(h, "thread", ...) as a ba.thread job while the cosocket me waits.
local function viathread(h, me, fn, ...)
   local args = tpack(...)
   local token = {}
   h.inflight = token
   local queued = pcall(threadrun, function()
      local r = tpack(pcall(fn, h, "thread", tunpack(args, 1, args.n)))
      r.token = token
      h.inflight = nil
      me:enable(r)
   end)
   if not queued then
      h.inflight = nil
      return nil, "sysshutdown"
   end
   while true do
      local r, err = me:disable()
      if r == nil then return nil, err or "socketclosed" end -- the job ends on its own
      if type(r) == "table" and r.token == token then
         if not r[1] then error(r[2], 0) end
         return tunpack(r, 2, r.n)
      end
   end
end

local function call(h, fn, connects, ...)
   if getmetatable(h) ~= MT then error("httpc: method called on a non-httpc value", 3) end
   if h.inflight then return nil, "incorrectuse" end
   local ctx = P.context()
   if ctx == "cosocket" then
      local me = getsock()
      if me and not (h.sock and h.owner == me) and (h.sock or (connects and connected(me))) then
         return viathread(h, me, fn, ...)
      end
   end
   return fn(h, ctx, ...)
end

---------------------------------------------------------------------------
-- Methods

function H:request(op) return call(self, request, true, op) end
function H:status() return call(self, status, false) end
function H:read(n) return call(self, read, false, n) end
function H:write(data) return call(self, write, false, data) end

local function headers(h)
   local ok, err, why = call(h, readhead, false)
   if not ok then return nil, err, why end
   return h.hdrs
end

-- header(name) -> value, status; header() -> table, status (names as
-- received, looked up case-insensitively; repeated headers joined by ", ")
function H:header(name)
   local list, err, why = headers(self)
   if not list then return nil, err, why end
   if not self.hmap then
      local map, tab = {}, {}
      for i = 1, #list, 2 do
         local n, v = list[i], list[i + 1]
         local l = n:lower()
         local old = map[l]
         map[l] = old and old .. ", " .. v or v
         if old then
            for k in pairs(tab) do
               if k:lower() == l then tab[k] = map[l] end
            end
         else
            tab[n] = v
         end
      end
      self.hmap = map
      self.htable = setmetatable(tab, {__index = function(_, k)
         return type(k) == "string" and map[k:lower()] or nil
      end})
   end
   if name == nil then return self.htable, self.code end
   return self.hmap[tostring(name):lower()], self.code
end

-- for name, value in h:headerpairs(): every header line, in order
function H:headerpairs()
   local list = headers(self) or {}
   local i = -1
   return function()
      i = i + 2
      if list[i] then return list[i], list[i + 1] end
   end
end

-- for name, value, attributes in h:cookie(): each Set-Cookie of the
-- response; attributes maps lower-case names to values (true for flags)
function H:cookie()
   local list = headers(self) or {}
   local i = -1
   return function()
      while true do
         i = i + 2
         local n, v = list[i], list[i + 1]
         if not n then return nil end
         if n:lower() == "set-cookie" then
            local nv, rest = v:match("^([^;]*);?(.*)$")
            local cname, cval = nv:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
            if cname then
               local attrs = {}
               for item in rest:gmatch("[^;]+") do
                  local an, av = item:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
                  if an then
                     attrs[an:lower()] = av
                  else
                     an = item:match("^%s*(.-)%s*$")
                     if an ~= "" then attrs[an:lower()] = true end
                  end
               end
               return cname, cval, attrs
            end
         end
      end
   end
end

function H:timeout(ms)
   ms = tointeger(ms)
   if not ms or ms < 0 then error("httpc: timeout: milliseconds expected", 2) end
   self.tmo = ms
   return true
end

local function sockcall(h, method, ...)
   local s = h.sock
   if not s then return nil, "invalidsocketcon" end
   return s[method](s, ...)
end

function H:certificate() return sockcall(self, "certificate") end
function H:cipher() return sockcall(self, "cipher") end
function H:trusted() return sockcall(self, "trusted", self.host) end
function H:peername() return sockcall(self, "peername") end
function H:sockname() return sockcall(self, "sockname") end

function H:close()
   if getmetatable(self) ~= MT then error("httpc: method called on a non-httpc value", 2) end
   closeconn(self)
   reset(self)
   return true
end
MT.__close = H.close

---------------------------------------------------------------------------
-- ba.socket.http2sock's half (httpc.c calls it): the finished request's
-- socket, the bytes read past the response head, and whether it is a
-- WebSocket (a 101 whose Sec-WebSocket-Accept answers our key).
function P.take(h)
   if getmetatable(h) ~= MT then
      if type(h) ~= "table" or getmetatable(h.raw) ~= MT then return nil, "invalidsocketcon" end
      h = h.raw
   end
   local code = h.state == "tunnel" or h:status()
   local s = h.sock
   if not code or not connected(s) then return nil, "invalidsocketcon" end
   local accept = code ~= true and h:header("Sec-WebSocket-Accept")
   local ws = false
   if accept then
      if code ~= 101 or not h.wskey or accept ~= P.acceptkey(h.wskey) then return nil, "invalidsocketcon" end
      ws = true
   end
   local left = h.buf
   if h.owner then
      local err
      s, err = P.detach(s)
      if not s then return nil, err end
   end
   h.sock, h.owner, h.connkey, h.buf, h.reusable = nil, nil, nil, "", false
   reset(h)
   return s, left, ws
end

---------------------------------------------------------------------------
-- The module

local M = {}

function M.create(op)
   if op ~= nil and type(op) ~= "table" then error("httpc.create: option table expected", 2) end
   op = op or {}
   local proxy = op.proxy
   if proxy ~= nil and type(proxy) ~= "string" then error("httpc.create: proxy must be a host name", 2) end
   local proxyport = op.proxyport or (op.socks and 1080 or 8080)
   return setmetatable({
      proxy = proxy,
      proxyport = tointeger(proxyport) or error("httpc.create: proxyport must be an integer", 2),
      socks = proxy and op.socks and true or nil,
      proxycon = proxy and op.proxycon and true or nil,
      proxyuser = op.proxyuser and tostring(op.proxyuser),
      proxypass = op.proxypass and tostring(op.proxypass),
      persistent = op.persistent ~= false,
      sendhost = op.host ~= false,
      shark = op.shark,
      intf = op.intf,
      ipv6 = op.ipv6 and true or false,
      tmo = DEFAULT_TIMEOUT,
      buf = "",
   }, MT)
end

M.parsequery = P.parsequery

return M
