-- test_api: checks of the ba.* API that the script can do by itself, on
-- loopback. Each check traces "CHECK <name> ok" or "CHECK <name> FAIL <why>";
-- "CHECKS DONE" at the end. The Python side compares against its list.
-- ARGS: refusedPort (nothing listens there) backlogPort (a listener whose
-- backlog is full, so connecting to it hangs)
local refusedPort, backlogPort = ...
refusedPort = math.tointeger(tonumber(refusedPort))
backlogPort = math.tointeger(tonumber(backlogPort))
local lib = require"testlib"
local check = lib.check
local LO = "127.0.0.1"

local topLevelGetsock = ba.socket.getsock()

-- ---- helpers ---------------------------------------------------------------

local function sleep(ms)
   return ba.socket.getsock():read(ms)
end

-- Run fn(sock, ...) in a new cosocket; the calling cosocket waits (disable /
-- enable, as the proxy does) and gets what fn returned, or fn's error.
local function await(fn, ...)
   local me = ba.socket.getsock()
   local res, waiting
   ba.socket.event(function(s, ...)
      res = table.pack(pcall(fn, s, ...))
      if waiting then me:enable() end
   end, ...)
   if not res then
      waiting = true
      me:disable()
   end
   if not res[1] then error(res[2], 0) end
   return table.unpack(res, 2, res.n)
end

-- Poll (sleeping 10 ms at a time) until cond() holds or ms pass.
local function waitFor(cond, ms)
   local t0 = ba.clock()
   while not cond() do
      if ba.clock() - t0 > ms then return false end
      sleep(10)
   end
   return true
end

-- The script's own loopback server; server.handler serves each connection.
local server = lib.handlerServer()
local lport = server.port
local ls = server.listener

local tests = {}
local function test(name, fn) tests[#tests + 1] = {name = name, fn = fn} end

-- ---- ba.socket.n2h / h2n / fn2h / fh2n ------------------------------------

test("codec", function()
   local ok = true
   for size = 1, 8 do
      local max = size == 8 and -1 or (1 << (8 * size)) - 1
      for _, v in ipairs{0, 1, 0x5a, max, max - 2} do
         local s = ba.socket.h2n(size, v)
         if #s ~= size or ba.socket.n2h(size, s) ~= v then
            ok = check("codec.roundtrip", false, "size", size, "value", v) and ok
         end
      end
   end
   check("codec.roundtrip", ok)
   check("codec.bigendian", ba.socket.h2n(4, 0x01020304) == "\1\2\3\4")
   check("codec.offset", ba.socket.n2h(2, "\1\2\3", 2) == 0x0203)
   local e1ok, e1 = pcall(ba.socket.n2h, 9, "123456789")
   check("codec.invalid_size", not e1ok and tostring(e1):find("Invalid size"), e1)
   local e2ok, e2 = pcall(ba.socket.n2h, 4, "abc")
   check("codec.invalid_offset", not e2ok and tostring(e2):find("Invalid offset"), e2)
   check("codec.float", ba.socket.fn2h(8, ba.socket.fh2n(8, 3.25)) == 3.25
      and ba.socket.fn2h(4, ba.socket.fh2n(4, -1.5)) == -1.5)
end)

-- ---- getsock, clock, sleeping ----------------------------------------------

test("getsock", function()
   local me = ba.socket.getsock()
   check("getsock.toplevel_nil", topLevelGetsock == nil, tostring(topLevelGetsock))
   check("getsock.cosocket", me ~= nil and me:owner() == true)
   local inTimer = "not run"
   ba.timer(function() inTimer = ba.socket.getsock() end):set(1, true)
   waitFor(function() return inTimer ~= "not run" end, 1000)
   check("getsock.timer_nil", inTimer == nil, tostring(inTimer))
end)

test("clock", function()
   local prev, mono = ba.clock(), true
   check("clock.integer", math.type(prev) == "integer", math.type(prev))
   for _ = 1, 1000 do
      local c = ba.clock()
      if c < prev then mono = false end
      prev = c
   end
   local t0 = ba.clock()
   sleep(100)
   local dt = ba.clock() - t0
   check("clock.monotonic", mono and dt >= 95 and dt < 2000, "dt", dt)
end)

test("sleep", function()
   local me = ba.socket.getsock()
   local t0 = ba.clock()
   local d, e = me:read(100)
   local dt = ba.clock() - t0
   check("sleep.timeout", d == nil and e == "timeout", d, e)
   check("sleep.duration", dt >= 95 and dt < 2000, "dt", dt)
   check("sleep.state_exec", me:state() == "exec", me:state())
   local ok, err = pcall(me.read, me)
   check("sleep.needs_timeout", not ok and tostring(err):find("Invalid op"), err)
end)

-- ---- ba.timer -----------------------------------------------------------

test("timer", function()
   local count = 0
   local t1 = ba.timer(function() count = count + 1; return count < 5 end)
   check("timer.set_returns_true", t1:set(10) == true)
   waitFor(function() return count >= 5 end, 2000)
   sleep(100)
   check("timer.rearm_count", count == 5, "fired", count)

   local fired = false
   local t2 = ba.timer(function() fired = true end)
   t2:set(100)
   check("timer.cancel_armed", t2:cancel() == true)
   sleep(200)
   check("timer.cancelled_silent", not fired)
   check("timer.cancel_idle", t2:cancel() == nil)

   local firedAt
   local t3 = ba.timer(function() firedAt = ba.clock() end)
   local t0 = ba.clock()
   t3:set(5000)
   check("timer.reset_returns_true", t3:reset(50) == true)
   waitFor(function() return firedAt end, 2000)
   check("timer.reset", firedAt and firedAt - t0 >= 45 and firedAt - t0 < 2000,
      "fired after", firedAt and firedAt - t0)

   local steps = {}
   local t4 = ba.timer(function()
      steps[#steps + 1] = 1
      coroutine.yield(true)
      steps[#steps + 1] = 2
      coroutine.yield(true)
      steps[#steps + 1] = 3
   end)
   t4:set(20)
   waitFor(function() return #steps >= 3 end, 2000)
   sleep(150)
   check("timer.yield_true", table.concat(steps, ",") == "1,2,3", table.concat(steps, ","))

   local psteps = {}
   local t5 = ba.timer(function()
      psteps[#psteps + 1] = "a"
      coroutine.yield()
      psteps[#psteps + 1] = "b"
   end)
   t5:set(10)
   sleep(150)
   local paused = table.concat(psteps, ",")
   t5:set(10)
   waitFor(function() return #psteps >= 2 end, 2000)
   check("timer.yield_pauses", paused == "a" and table.concat(psteps, ",") == "a,b",
      paused, table.concat(psteps, ","))

   local calls = 0
   local t6 = ba.timer(function() calls = calls + 1 end)
   local r = t6:set(50, false, true)
   sleep(150)
   check("timer.runnow_false", r == false and calls == 1, r, calls)
   local again = 0
   local t7 = ba.timer(function() again = again + 1; return again < 3 end)
   local r7 = t7:set(20, false, true)
   waitFor(function() return again >= 3 end, 2000)
   check("timer.runnow_true", r7 == true and again == 3, r7, again)

   local kept = false
   ba.timer(function() kept = true end):set(30, true)
   local dropped = false
   ba.timer(function() dropped = true end):set(30)
   collectgarbage()
   collectgarbage()
   sleep(200)
   check("timer.keepref", kept)
   check("timer.gc_cancels", not dropped)

   local t8 = ba.timer(function() error("deliberate timer failure") end)
   t8:set(10)
   sleep(100)
   local ok, err = pcall(t8.set, t8, 10)
   check("timer.error_sticks", not ok and tostring(err):find("Timer callback failed"), err)
end)

-- ---- connect ------------------------------------------------------------

test("connect", function()
   local s, e = await(function() return ba.socket.connect(LO, refusedPort) end)
   check("connect.refused", s == nil and e == "cannotconnect", s, e)

   local s2, e2, info = await(function() return ba.socket.connect("nonexistent.invalid", 80) end)
   check("connect.cannotresolve", s2 == nil and e2 == "cannotresolve" and type(info) == "string",
      s2, e2, info)

   -- connect timeout: the listener's backlog is full, so the SYN goes unanswered
   local stateDuring
   local t0 = ba.clock()
   local waiter = ba.socket.getsock()
   local res
   local c = ba.socket.event(function(cs)
      res = table.pack(ba.socket.connect(LO, backlogPort, {timeout = 300}))
      waiter:enable()
   end)
   stateDuring = c and c:state()
   if not res then waiter:disable() end
   local dt = ba.clock() - t0
   check("connect.timeout", res[1] == nil and res[2] == "timeout" and dt >= 250 and dt < 5000,
      res[1], res[2], "after", dt)
   check("connect.state_connect", stateDuring == "connect", stateDuring)

   local same, again, ename = await(function(cs)
      local r = ba.socket.connect(LO, lport)
      return r == cs, ba.socket.connect(LO, lport)
   end)
   check("connect.returns_own_socket", same == true)
   check("connect.incorrectuse", again == nil and ename == "incorrectuse", again, ename)

   -- outside a cosocket (a timer) connect blocks and returns a socket or nil,err
   local tr
   ba.timer(function() tr = table.pack(ba.socket.connect(LO, refusedPort)) end):set(1, true)
   waitFor(function() return tr end, 3000)
   check("connect.blocking_refused", tr and tr[1] == nil and tr[2] == "cannotconnect",
      tr and tr[1], tr and tr[2])

   check("toip.localhost", ba.socket.toip("localhost") == LO, ba.socket.toip("localhost"))
   local ip, ie = ba.socket.toip("nonexistent.invalid")
   check("toip.cannotresolve", ip == nil and ie == "cannotresolve", ip, ie)
end)

-- ---- read timeout on a connected socket, then data ---------------------------

test("read_timeout", function()
   local srv
   server.handler = function(s)
      local t0 = ba.clock()
      local d, e = s:read(200)
      local dt = ba.clock() - t0
      local st, con = s:state()
      local d2 = s:read(3000)
      srv = {d = d, e = e, dt = dt, st = st, con = con, d2 = d2}
      s:write("done")
   end
   local reply = await(function(c)
      ba.socket.connect(LO, lport)
      local d, e = c:read(400) -- nothing comes: our own timeout too
      c:write("ping")
      return c:read(3000), d, e
   end)
   check("read_timeout.result", srv and srv.d == nil and srv.e == "timeout",
      srv and srv.d, srv and srv.e)
   check("read_timeout.duration", srv and srv.dt >= 190 and srv.dt < 3000, srv and srv.dt)
   check("read_timeout.stays_open", srv and srv.con == true, srv and srv.st, srv and srv.con)
   check("read_timeout.usable_after", srv and srv.d2 == "ping", srv and srv.d2)
   check("read_timeout.reply", reply == "done", reply)
end)

-- ---- names, state, tostring, close, stat -------------------------------------

test("sockinfo", function()
   server.handler = function(s)
      local _, pport = s:peername()
      s:write(tostring(pport))
      s:read()
   end
   local me = ba.socket.getsock()
   local client, info
   ba.socket.event(function(c)
      ba.socket.connect(LO, lport)
      client = c
      local a, p, v6 = c:peername()
      local la, lp = c:sockname()
      local st, con = c:state()
      info = {a = a, p = p, v6 = v6, la = la, lp = lp, st = st, con = con, str = tostring(c),
         srvSeen = c:read(3000)}
      local d, e = c:read() -- until closed from outside
      info.closedWith = e
   end)
   waitFor(function() return info end, 3000)
   check("sockinfo.peername", info and info.a == LO and info.p == lport and info.v6 == false,
      info and info.a, info and info.p, info and info.v6)
   check("sockinfo.sockname", info and info.la == LO and tostring(info.lp) == info.srvSeen,
      info and info.la, info and info.lp, info and info.srvSeen)
   check("sockinfo.state_exec", info and info.st == "exec" and info.con == true,
      info and info.st, info and info.con)
   local pat = "^%[Sock 0x%x+ S:exec {127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. lport .. "}%]$"
   check("sockinfo.tostring", info and info.str:match(pat), info and info.str)
   sleep(20)
   local st = client and client:state()
   check("sockinfo.state_read", st == "read", st)
   check("sockinfo.owner_outside", client and client:owner() == false)
   check("sockinfo.listener_accept", ls:state() == "accept", ls:state())
   check("sockinfo.close_true", client and client:close() == true)
   check("sockinfo.close_false", client and client:close() == false)
   waitFor(function() return info.closedWith end, 1000)
   check("sockinfo.closed_wakes", info.closedWith == "socketclosed", info.closedWith)
   local st2, con2 = client:state()
   check("sockinfo.state_terminated", st2 == "terminated" and con2 == false, st2, con2)
   check("sockinfo.tostring_terminated", tostring(client):find("S:terminated", 1, true),
      tostring(client))
   local w, we = client:write("x")
   check("sockinfo.write_closed", w == nil and we == "socketclosed", w, we)
   local total, active = ba.socket.stat()
   check("sockinfo.stat", math.type(total) == "integer" and math.type(active) == "integer"
      and total >= active and active >= 1, total, active)
end)

-- ---- misuse raises "Invalid op" / "Already in async/cosocket mode" -----------

test("misuse", function()
   local ok, err = pcall(ls.read, ls)
   check("misuse.read_listener", not ok and tostring(err):find("Invalid op"), err)
   ok, err = pcall(ls.write, ls, "x")
   check("misuse.write_listener", not ok and tostring(err):find("Invalid op"), err)
   ok, err = pcall(ls.event, ls, function() end)
   check("misuse.event_again", not ok and tostring(err):find("Already in async/cosocket mode"), err)
   local c
   server.handler = function(s) s:read() end
   ba.socket.event(function(cs) ba.socket.connect(LO, lport); c = cs; cs:read() end)
   waitFor(function() return c end, 2000)
   ok, err = pcall(c.read, c)
   check("misuse.read_other_cosocket", not ok and tostring(err):find("Invalid op"), err)
   c:close()
end)

-- ---- write in "s" mode -------------------------------------------------------

test("write", function()
   server.handler = function(s)
      while s:read() do end
   end
   local r = await(function(c)
      ba.socket.connect(LO, lport)
      local ok, queued = c:write("hello")
      local f = c:write("hello", 3, 2) -- i > j
      local ok2 = c:write(12345) -- converted with tostring
      return {ok = ok, queued = queued, f = f, ok2 = ok2}
   end)
   check("write.true_queued", r.ok == true and math.type(r.queued) == "integer", r.ok, r.queued)
   check("write.i_gt_j_false", r.f == false, r.f)
   check("write.number", r.ok2 == true, r.ok2)
end)

-- A writer that is not a cosocket (here a timer) only has its data queued
-- when the kernel cannot take it (seed 003, "Cosockets flow control"), so
-- 32 KiB to an idle connection must not hit the 16 KiB queue limit.
test("write_from_timer", function()
   local got = 0
   server.handler = function(s)
      while true do
         local d = s:read()
         if not d then break end
         got = got + #d
      end
   end
   local c
   ba.socket.event(function(cs) ba.socket.connect(LO, lport); c = cs; cs:read() end)
   waitFor(function() return c end, 2000)
   sleep(50) -- the connection has been idle for a while: the kernel has room
   local res
   ba.timer(function()
      local r = {}
      for i = 1, 4 do r[i] = table.pack(c:write(string.rep("w", 8192))) end
      res = r
   end):set(1, true)
   waitFor(function() return res end, 2000)
   local ok, desc = res ~= nil, {}
   for i = 1, res and 4 or 0 do
      desc[i] = tostring(res[i][1]) .. "," .. tostring(res[i][2])
      if res[i][1] ~= true then ok = false end
   end
   check("write.timer_not_queued_when_kernel_has_room", ok, table.concat(desc, " "))
   waitFor(function() return got >= 4 * 8192 end, 2000)
   check("write.timer_data_arrives", ok and got == 4 * 8192 or not ok, got)
   c:close()

   -- the same on a socket connected in that very callback (seed 003, 12b)
   got = 0
   local fres
   ba.timer(function()
      local fc = ba.socket.connect(LO, lport)
      fc:event(function(fs) fs:read() end, "s")
      local r = {}
      for i = 1, 4 do r[i] = table.pack(fc:write(string.rep("f", 8192))) end
      r.sock = fc
      fres = r
   end):set(1, true)
   waitFor(function() return fres end, 2000)
   local fok, fdesc = fres ~= nil, {}
   for i = 1, fres and 4 or 0 do
      fdesc[i] = tostring(fres[i][1]) .. "," .. tostring(fres[i][2])
      if fres[i][1] ~= true then fok = false end
   end
   check("write.timer_fresh_socket_not_queued", fok, table.concat(fdesc, " "))
   if fres then fres.sock:close() end
end)

-- ---- disable / enable ---------------------------------------------------------

test("disable_enable", function()
   local got
   local x = ba.socket.event(function(s) got = table.pack(s:disable()) end)
   check("disable.state", x and x:state() == "disabled", x and x:state())
   local r = x:enable("token", 42)
   check("enable.passes_args", got and got[1] == "token" and got[2] == 42 and got.n == 2,
      got and got[1], got and got[2])
   check("enable.false_when_ended", r == false, r)

   local y = ba.socket.event(function(s) s:read(200) end)
   check("enable.not_disabled_no_values", select("#", y:enable()) == 0)

   -- the proxy's hand-over: Y connects, then gives its socket to X
   local handed
   server.handler = function(s) s:write("from server"); s:read() end
   local xs = ba.socket.event(function(xsock)
      ba.socket.event(function(ysock)
         if ba.socket.connect(LO, lport) ~= ysock then return end
         xsock:enable(ysock)
         ysock:read(3000)
      end)
      local ysock = xsock:disable()
      local _, pport = ysock:peername()
      handed = pport == lport or tostring(ysock)
   end)
   waitFor(function() return handed end, 3000)
   check("enable.handover", handed == true, handed)

   -- disable() from outside pauses reading (back-pressure), enable() resumes
   local received = {}
   local srvSock
   server.handler = function(s)
      srvSock = s
      while true do
         local d = s:read()
         if not d then break end
         received[#received + 1] = d
      end
   end
   local client
   ba.socket.event(function(c)
      ba.socket.connect(LO, lport)
      client = c
      c:read(5000)
   end)
   waitFor(function() return srvSock and client and srvSock:state() == "read" end, 3000)
   local dr = srvSock and srvSock:disable()
   check("disable.outside_true", dr == true, dr)
   check("disable.outside_state", srvSock and srvSock:state() == "disabled", srvSock and srvSock:state())
   client:write("while paused")
   sleep(150)
   check("disable.outside_holds_data", #received == 0, received[1])
   local er = srvSock and srvSock:enable()
   waitFor(function() return #received > 0 end, 2000)
   check("enable.outside_resumes", er == true and received[1] == "while paused", er, received[1])
   client:close()
end)

-- ---- run them -----------------------------------------------------------------

-- The accept loop may take up a test's connection only after that test has
-- ended: before each test, wait until a probe connection made now has been
-- accepted (accepting is FIFO), so every older connection has its handler.
local function settleAccepts()
   local probeSeen = false
   server.handler = function(s)
      local d = s:read()
      if d == "PROBE" then probeSeen = true end
      while d do d = s:read() end
   end
   local probe
   ba.socket.event(function(cs)
      ba.socket.connect(LO, lport)
      probe = cs
      cs:write("PROBE")
      cs:read(5000)
   end)
   waitFor(function() return probeSeen end, 5000)
   if probe then probe:close() end
end

ba.socket.event(function()
   for _, t in ipairs(tests) do
      settleAccepts()
      local ok, err = pcall(t.fn)
      if not ok then check(t.name .. ".no_error", false, err) end
   end
   ls:close()
   trace("CHECKS DONE")
end)
