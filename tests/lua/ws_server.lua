-- test_ws: the server side of WebSockets. Starts cosockd.http{} on
-- 127.0.0.1 (port 0; the daemon logs "http: listening on ADDR:PORT") with
-- tests/lua/www/ws/ as its root, and defines the cosocket functions that
-- the pages there hand their sockets to (pages reach them as app.NAME).
-- ARGS, each KEY=VALUE:
--   root=DIR         the web root (required)
--   maxframe=N       the server's ws_max_frame option
--   cert=F key=F     serve HTTPS/WSS with this PEM certificate and key
--   auth=1           protect /private/ (user alice:secret by Basic
--                    credentials, or user bob by the cookie session=tok-bob)
-- Records, one per line, all "WS<EVENT> id=<id> key=value...":
--   WSOPEN    a WebSocket started: mode=s|r|blocking websocket=<bool> user=<u>
--   WSFRAG    a read in fragment form: len bytesRead frameLen of that read
--   WSMSG     a whole message (Example 15's assembly): n len text form
--   WSWRITEERR  the echo's write raised or failed: err=<message>
--   WSEND     read returned nil: err=<string> code=<close code> msgs=<n>
--   WSCLOSED  after sock:close() from the "!close" command: ret=<result>
--   WSMAXFRAME  sock:maxframe(n) on a page's socket: prev=<previous limit>
--   WSSTREAM  a message streamed by wsStream: total chunks maxchunk flen...
--   WSQFULL / WSQDONE / WSQERR  the queue writers of wsQueue
--   WSRAW     req2sock(request, true) in raw.lsp
--   BROWSER <body>  what the browser page POSTed to /result
local args = {}
for _, a in ipairs({...}) do
   local k, v = a:match("^([%w_]+)=(.*)$")
   if k then args[k] = v end
end
local log = print
local num = function(v) return math.tointeger(tonumber(v)) end

local function rec(event, id, fmt, ...)
   log(string.format("WS%s id=%s " .. fmt, event, id, ...))
end

-- Seed Example 15: assembling a WebSocket frame, as the seed writes it,
-- except that reads go through rd (sock:read plus a WSFRAG record) and
-- the third result is passed on: after a failure it is the close code.
local function wsread(sock, rd)
   local data,utf8,bytesRead,frameLen = rd(sock)
   if frameLen then -- nil if not a fragment
      local t={} -- Assemble in table t
      repeat
         table.insert(t,data)
         data,utf8,bytesRead,frameLen = rd(sock)
      until not data or frameLen == bytesRead
      if data then
         table.insert(t,data)
         data=table.concat(t) -- Assemble
      end
      -- else failed, utf8 is now errcode
   end
   return data,utf8,bytesRead -- Returns data,utf8 or nil,ecode,closecode
end

-- Text messages starting with "!" are commands to the echo:
--   !ping / !ping:PAYLOAD  sock:ping() / sock:ping(PAYLOAD), then echo
--   !close                 sock:close() (the client sees Close 1000)
--   !maxframe              answer "maxframe=<sock:maxframe()>"
--   !big:N                 write a binary frame of N bytes ("b" x N), or
--                          answer "err:<message>" when write raises/fails
-- Returns true when the coroutine must end.
local function command(s, id, cmd)
   local payload = cmd:match("^!ping:(.*)$")
   if cmd == "!ping" or payload then
      if payload then s:ping(payload) else s:ping() end
      s:write(cmd, true)
   elseif cmd == "!close" then
      rec("CLOSED", id, "ret=%s", tostring(s:close()))
      return true
   elseif cmd == "!maxframe" then
      s:write("maxframe=" .. tostring(s:maxframe()), true)
   elseif cmd:match("^!big:%d+$") then
      local ok, r, e = pcall(s.write, s, string.rep("b", num(cmd:sub(6))), false)
      if not ok or not r then s:write("err:" .. tostring(ok and e or r), true) end
   else
      s:write(cmd, true)
   end
end

-- The echo: whole messages (Example 15's assembly) written back with the
-- type they came with. mode is for the record only; user is the page's
-- request:user().
function wsEcho(s, id, mode, user)
   rec("OPEN", id, "mode=%s websocket=%s user=%s", mode, tostring(s:websocket()), tostring(user))
   local frags = 0
   local function rd(sock)
      local d, t, br, fl = sock:read()
      if fl then
         frags = frags + 1
         rec("FRAG", id, "len=%d read=%d flen=%d text=%s", #d, br, fl, tostring(t))
      end
      return d, t, br, fl
   end
   local n = 0
   while true do
      frags = 0
      local data, isText, code = wsread(s, rd)
      if not data then
         rec("END", id, "err=%s code=%s msgs=%d", tostring(isText), tostring(code), n)
         return
      end
      n = n + 1
      rec("MSG", id, "n=%d len=%d text=%s form=%s", n, #data, tostring(isText),
          frags > 0 and "frag" or "whole")
      if isText and data:sub(1, 1) == "!" then
         if command(s, id, data) then return end
      else
         local ok, r, e = pcall(s.write, s, data, isText)
         if not ok or not r then
            rec("WRITEERR", id, "n=%d err=%s", n, tostring(ok and e or r))
         end
      end
   end
end

-- sock:maxframe(n) on a page's socket before its cosocket starts.
function wsMaxframe(s, id, n)
   rec("MAXFRAME", id, "prev=%s", tostring(s:maxframe(n)))
end

-- Streams every message back without assembling it: each read becomes a
-- frame of its own, then a text frame "END <total> <chunks>" ends the
-- message. Records WSSTREAM with the total, the number of fragment-form
-- reads, the largest one, frameLen of the first and last piece, and
-- whether bytesRead always was the running total (cum=true).
function wsStream(s, id)
   rec("OPEN", id, "mode=s websocket=%s user=nil", tostring(s:websocket()))
   local n = 0
   local st
   local function reset() st = {total = 0, chunks = 0, max = 0, cum = true} end
   reset()
   while true do
      local d, t, br, fl = s:read()
      if not d then
         rec("END", id, "err=%s code=%s msgs=%d", tostring(t), tostring(br), n)
         return
      end
      st.total = st.total + #d
      if fl then
         st.chunks = st.chunks + 1
         if #d > st.max then st.max = #d end
         if br ~= st.total then st.cum = false end
         st.first = st.first or fl
         st.last = fl
      end
      s:write(d, t)
      if not fl or br == fl then
         n = n + 1
         rec("STREAM", id, "n=%d total=%d chunks=%d maxchunk=%d flen_first=%s flen_last=%s cum=%s",
             n, st.total, st.chunks, st.max, tostring(st.first), tostring(st.last), tostring(st.cum))
         s:write(string.format("END %d %d", st.total, st.chunks), true)
         reset()
      end
   end
end

-- Queue semantics on an "s" WebSocket written by others: a socket-less
-- cosocket writes nco text messages "co:<i>:..." (a cosocket writer waits
-- when the queue is full), and a timer (not a cosocket) writes binary
-- messages "tm:<i>:..." until write returns nil, queuedBytes. The socket's
-- own cosocket only reads, until the client closes.
function wsQueue(s, id, nco)
   s:event(function(sock)
      rec("OPEN", id, "mode=s websocket=%s user=nil", tostring(sock:websocket()))
      ba.socket.event(function()
         for i = 1, nco do
            local ok, q = sock:write(string.format("co:%d:%s", i, string.rep("c", 4000)), true)
            if not ok then
               rec("QERR", id, "src=co i=%d q=%s", i, tostring(q))
               return
            end
         end
         rec("QDONE", id, "src=co writes=%d", nco)
      end)
      ba.timer(function()
         local i = 0
         while i < 10000 do
            local ok, q = sock:write(string.format("tm:%d:%s", i + 1, string.rep("t", 8000)), false)
            if not ok then
               rec("QFULL", id, "src=timer writes=%d queued=%s qtype=%s limit=%s", i,
                   tostring(q), tostring(math.type(q)), tostring(sock:queuelen()))
               return
            end
            i = i + 1
         end
         rec("QDONE", id, "src=timer writes=%d", i)
      end):set(1, true)
      local n = 0
      while true do
         local d, err, code = sock:read()
         if not d then
            rec("END", id, "err=%s code=%s msgs=%d", tostring(err), tostring(code), n)
            return
         end
         n = n + 1
      end
   end, "s")
end

local opts = {port = 0, intf = "127.0.0.1", root = assert(args.root, "root=DIR missing")}
if args.maxframe then opts.ws_max_frame = num(args.maxframe) end
if args.cert then opts.shark = ba.tls.server{cert = args.cert, key = args.key} end
if args.auth then
   opts.auth = {
      realm = "cosockd",
      users = {alice = "secret"},
      session = function(request)
         if request:cookie("session") == "tok-bob" then return "bob" end
      end,
      protect = {"/private/"},
   }
end

local srv, err, why = cosockd.http(opts)
if not srv then error(string.format("cosockd.http: %s %s", tostring(err), tostring(why)), 0) end

-- A function page: the "r"-mode echo (seed Example 5 with mode "r").
srv:page("/fn/echo", function(request, response)
   local id = request:data("id") or "fn"
   local s = ba.socket.req2sock(request)
   if s then s:event(wsEcho, "r", id, "r") end
end)

-- The browser page POSTs its result here.
srv:page("/result", function(request, response)
   log("BROWSER " .. tostring(request:rawrdbuf()))
   response:setcontenttype("text/plain")
   response:write("ok")
end)
