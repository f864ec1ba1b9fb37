-- test_thread: ba.thread, ba.sleep and blocking sockets, checked by the
-- script itself on loopback. Each check traces "CHECK <name> ok" or
-- "CHECK <name> FAIL <why>"; "CHECKS DONE" at the end.
-- ARGS: refusedPort (nothing listens there) backlogPort (connecting hangs)
local refusedPort, backlogPort = ...
refusedPort = math.tointeger(tonumber(refusedPort))
backlogPort = math.tointeger(tonumber(backlogPort))
local lib = require"testlib"
local check = lib.check
local LO = "127.0.0.1"

-- The script's own loopback server; server.handler serves each connection.
local server = lib.handlerServer()
local lport = server.port

local function echoHandler(s)
   while true do
      local d = s:read()
      if not d then break end
      s:write(d)
   end
end

local function silentHandler(s)
   while s:read() do end
end

local steps = lib.steps()
local function nextStep() steps:next() end
local function step(fn) steps:add(fn) end
local function jobStep(body) steps:job(body) end

-- ---- ba.thread ---------------------------------------------------------------

step(function()
   local n = ba.thread.run(function()
      check("thread.getsock_nil", ba.socket.getsock() == nil)
      check("thread.in_coroutine", coroutine.isyieldable())
      nextStep()
   end)
   check("thread.run_returns_pending", math.type(n) == "integer" and n >= 1, n)
end)

step(function()
   -- A dedicated pool has one thread: jobs run in order, and an error in
   -- one leaves the thread serving the next.
   local p = ba.thread.create()
   local order = {}
   p:run(function() order[#order + 1] = 1; error("boom in job") end)
   p:run(function() ba.sleep(20); order[#order + 1] = 2 end)
   p:run(function()
      order[#order + 1] = 3
      check("thread.create_in_order", table.concat(order, ",") == "1,2,3", table.concat(order, ","))
      check("thread.survives_error", #order == 3)
      nextStep()
   end)
end)

step(function()
   check("thread.configure", ba.thread.configure(12) == 12)
   check("thread.configure_range", not pcall(ba.thread.configure, 0))
   nextStep()
end)

-- ---- ba.sleep ------------------------------------------------------------------

jobStep(function()
   local t0 = ba.clock()
   local r = table.pack(ba.sleep(120))
   local dt = ba.clock() - t0
   check("sleep.pool_duration", dt >= 115 and dt < 2000, dt)
   check("sleep.pool_no_values", r.n == 0, r.n)
end)

step(function()
   -- In a cosocket, ba.sleep suspends that coroutine only.
   local ticks = 0
   local tick = ba.timer(function() ticks = ticks + 1; return true end)
   tick:set(10)
   ba.socket.event(function()
      local t0 = ba.clock()
      local r = table.pack(ba.sleep(150))
      local dt = ba.clock() - t0
      tick:cancel()
      check("sleep.cosocket_duration", dt >= 145 and dt < 2000, dt)
      check("sleep.cosocket_no_values", r.n == 0, r.n)
      check("sleep.cosocket_loop_runs", ticks >= 5, ticks)
      nextStep()
   end)
end)

step(function()
   ba.timer(function()
      local ok, err = pcall(ba.sleep, 1)
      check("sleep.timer_raises", not ok and tostring(err):find("dispatcher", 1, true), err)
      nextStep()
   end):set(1, true)
end)

-- ---- blocking connect ----------------------------------------------------------

jobStep(function()
   local s, err = ba.socket.connect(LO, refusedPort)
   check("connect.blocking_refused", s == nil and err == "cannotconnect", s, err)
   s, err = ba.socket.connect("no-such-host.invalid", 80)
   check("connect.blocking_cannotresolve", s == nil and err == "cannotresolve", s, err)
   local t0 = ba.clock()
   s, err = ba.socket.connect(LO, backlogPort, {timeout = 200})
   local dt = ba.clock() - t0
   check("connect.blocking_timeout", s == nil and err == "timeout", s, err)
   check("connect.blocking_timeout_duration", dt >= 190 and dt < 3000, dt)
end)

-- ---- blocking read and write ---------------------------------------------------

jobStep(function()
   server.handler = echoHandler
   local s, err = ba.socket.connect(LO, lport)
   check("blocking.connect", s ~= nil, err)
   local st, valid = s:state()
   check("blocking.not_cosocket", valid == true and not s:owner(), st, valid)
   check("blocking.write_true", select("#", s:write("ping")) == 1 and s:write("") ~= nil)
   local d = s:read(2000)
   check("blocking.read_echo", d == "ping", d)
   s:write(ba.bytearray.create("bytes"))
   d = s:read(2000)
   check("blocking.write_bytearray", d == "bytes", d)
   local big = string.rep("0123456789abcdef", 65536) -- 1 MiB
   local ok = s:write(big)
   local got = {}
   local n = 0
   while n < #big do
      local c = s:read(5000)
      if not c then break end
      got[#got + 1] = c
      n = n + #c
   end
   check("blocking.write_big", ok == true and table.concat(got) == big, ok, n)
   s:close()
   check("blocking.closed_read", select(2, s:read(100)) == "socketclosed")
end)

jobStep(function()
   server.handler = silentHandler
   local s = ba.socket.connect(LO, lport)
   local t0 = ba.clock()
   local d, err = s:read(150)
   local dt = ba.clock() - t0
   check("blocking.read_timeout", d == nil and err == "timeout", d, err)
   check("blocking.read_timeout_duration", dt >= 145 and dt < 3000, dt)
   check("blocking.timeout_keeps_open", select(2, s:state()) == true)
   s:close()
end)

jobStep(function()
   -- Closing from another thread ends a blocking read at once.
   server.handler = silentHandler
   local s = ba.socket.connect(LO, lport)
   local closer = ba.thread.create()
   closer:run(function()
      ba.sleep(100)
      s:close()
   end)
   local t0 = ba.clock()
   local d, err = s:read()
   local dt = ba.clock() - t0
   check("blocking.closed_by_other_thread", d == nil and err == "socketclosed", d, err)
   check("blocking.closed_promptly", dt >= 90 and dt < 1000, dt)
end)

jobStep(function()
   -- ... and from a timer on the dispatcher thread.
   server.handler = silentHandler
   local s = ba.socket.connect(LO, lport)
   ba.timer(function() s:close() end):set(100, true)
   local d, err = s:read(5000)
   check("blocking.closed_by_timer", d == nil and err == "socketclosed", d, err)
end)

jobStep(function()
   -- The peer closes: socketreadfailed, then the dead-socket guard.
   server.handler = function(s) s:write("bye") end
   local s = ba.socket.connect(LO, lport)
   local got = s:read(2000)
   local d, err = s:read(2000)
   check("blocking.peer_close", got == "bye" and d == nil and err == "socketreadfailed", got, d, err)
   local ok, e = pcall(s.read, s)
   check("blocking.second_dead_read_raises", not ok and tostring(e):find("Socket closed", 1, true), e)
end)

step(function()
   -- A blocking socket cannot be read on the dispatcher thread.
   server.handler = silentHandler
   ba.thread.run(function()
      local s = ba.socket.connect(LO, lport)
      ba.timer(function()
         local ok, e = pcall(s.read, s, 10)
         check("blocking.read_on_dispatcher_raises", not ok and tostring(e):find("dispatcher", 1, true), e)
         s:close()
         nextStep()
      end):set(1, true)
   end)
end)

-- ---- pool threads and cosockets ---------------------------------------------------

step(function()
   -- A pool thread may not read a cosocket's socket; it may write to it, and
   -- then gets "s"-mode results (true, queued bytes).
   server.handler = echoHandler
   ba.socket.event(function(me)
      local s = ba.socket.connect(LO, lport)
      ba.thread.run(function()
         local ok, e = pcall(s.read, s, 10)
         check("pool.read_cosocket_raises", not ok and tostring(e):find("cosocket mode", 1, true), e)
         local r = table.pack(s:write("from pool"))
         check("pool.write_s_socket", r.n == 2 and r[1] == true and math.type(r[2]) == "integer", r[1], r[2])
         me:enable()
      end)
      me:disable()
      check("pool.write_s_socket_arrives", s:read(2000) == "from pool")
      s:close()
      nextStep()
   end)
end)

step(function()
   -- At its queue limit, a pool thread's write is refused with the
   -- queued byte count, like any writer that cannot wait.
   server.handler = function(s) s:read(); ba.sleep(1500); s:close() end
   ba.socket.event(function(me)
      local s = ba.socket.connect(LO, lport)
      s:queuelen(1000)
      local chunk = string.rep("x", 65536)
      ba.thread.run(function()
         local refused
         for _ = 1, 200 do
            local ok, q = s:write(chunk)
            if not ok then refused = q break end
         end
         check("pool.write_limit", math.type(refused) == "integer" and refused >= 1000, refused)
         me:enable()
      end)
      me:disable()
      s:close()
      nextStep()
   end)
end)

step(function()
   -- A cosocket started from a pool thread is a cosocket like any other:
   -- its connect and read yield (they do not act for the pool thread).
   server.handler = echoHandler
   ba.thread.run(function()
      ba.socket.event(function()
         local c, err = ba.socket.connect(LO, lport)
         check("pool.started_cosocket_connects", c ~= nil and c:owner(), c, err)
         if c then
            c:write("nested")
            check("pool.started_cosocket_reads", c:read(2000) == "nested")
            c:close()
         end
         nextStep()
      end)
      check("pool.after_starting_cosocket", true)
   end)
end)

step(function()
   -- "r" mode: reads yield, writes return one value once sent.
   server.handler = echoHandler
   local s = ba.socket.connect(LO, lport)
   s:event(function(sock)
      local r = table.pack(sock:write("r-mode"))
      check("rmode.write_one_value", r.n == 1 and r[1] == true, r.n, r[1])
      check("rmode.read", sock:read(2000) == "r-mode")
      local big = string.rep("y", 1 << 20)
      check("rmode.write_big", sock:write(big) == true)
      local n = 0
      while n < #big do
         local d = sock:read(5000)
         if not d then break end
         n = n + #d
      end
      check("rmode.write_big_echoed", n == #big, n)
      nextStep()
   end, "r")
end)

step(function()
   -- A Lua error on a pool thread is reported; the pool goes on.
   ba.thread.run(function() error("pool job failed on purpose") end)
   ba.thread.run(function()
      check("pool.after_error", true)
      nextStep()
   end)
end)

local ok, e = pcall(ba.sleep, 1)
check("sleep.toplevel_raises", not ok and tostring(e):find("dispatcher", 1, true), e)
nextStep()
