-- test_udp: ba.socket.udpcon in every form and mode, checked by the script
-- itself on loopback. "CHECK <name> ok|FAIL <why>", then "CHECKS DONE".
-- ARGS: echoPort (a Python UDP echo on 127.0.0.1)
local echoPort = math.tointeger(tonumber((...)))
local lib = require"testlib"
local check = lib.check
local LO = "127.0.0.1"

local steps = lib.steps()
local function nextStep() steps:next() end
local function step(fn) steps:add(fn) end
local function jobStep(body) steps:job(body) end

-- Blocking forms on a pool thread.
jobStep(function()
   local s, err = ba.socket.udpcon(LO, echoPort)
   check("udp.connected", s ~= nil, err)
   check("udp.write_true", s:write("one") == true)
   check("udp.read", s:read(2000) == "one")
   local d, e = s:read(100)
   check("udp.read_timeout", d == nil and e == "timeout", d, e)
   check("udp.stays_open", select(2, s:state()) == true)
   s:write("two")
   local d2, addr, port, v6 = s:read(2000, true)
   check("udp.read_from", d2 == "two" and addr == LO and port == echoPort and v6 == false,
         d2, addr, port, v6)
   local big = string.rep("z", 9000)
   s:write(big)
   check("udp.big_datagram", s:read(2000) == big)
   check("udp.close", s:close() == true and s:close() == false)
   check("udp.closed_read", select(2, s:read(100)) == "socketclosed")
end)

jobStep(function()
   local u = ba.socket.udpcon()
   check("udp.unbound_sendto", u:sendto("three", LO, echoPort) == true)
   local d, addr, port = u:read(2000, true)
   check("udp.unbound_reply", d == "three" and port == echoPort, d, addr, port)
   local ok, e = u:sendto("x", "no-such-host.invalid", 9)
   check("udp.sendto_cannotresolve", ok == nil and e == "cannotresolve", ok, e)
   check("udp.sendto_name", u:sendto("four", "localhost", echoPort) == true)
   check("udp.sendto_name_reply", u:read(2000) == "four")
   u:close()
end)

jobStep(function()
   -- Two bound sockets talk to each other; "" means bind to the port.
   local a = ba.socket.udpcon(0, {intf = LO})
   local _, aport = a:sockname()
   local b = ba.socket.udpcon("", 0, {intf = LO})
   local _, bport = b:sockname()
   check("udp.bound_ports", aport > 0 and bport > 0 and aport ~= bport, aport, bport)
   b:sendto("ab", LO, aport)
   local d, _, from = a:read(2000, true)
   check("udp.bound_exchange", d == "ab" and from == bport, d, from)
   check("udp.option_broadcast", a:setoption("broadcast", true) == true)
   check("udp.option_membership", a:setoption("ip-membership", true, "239.1.2.3", LO) == true)
   local ok, e = pcall(a.setoption, a, "ip-membership", true, "not-an-address")
   check("udp.option_membership_bad", not ok, e)
   a:close() b:close()
   local t = ba.socket.udpcon(LO, 1) -- nothing listens; nothing is sent
   local okw = pcall(t.sendto, t, "x", LO, echoPort)
   check("udp.sendto_connected_socket", okw)
   t:close()
end)

step(function()
   -- Cosocket form: inside ba.socket.event, udpcon makes the cosocket the
   -- UDP socket ("s" mode); read yields.
   ba.socket.event(function(me)
      local s = ba.socket.udpcon(LO, echoPort)
      check("udp.cosocket_in_place", s == me and s:owner())
      s:write("cs")
      check("udp.cosocket_read", s:read(2000) == "cs")
      s:write("cs2")
      local d, addr, port, v6 = s:read(2000, true)
      check("udp.cosocket_read_from", d == "cs2" and port == echoPort and v6 == false, d, port)
      local t0 = ba.clock()
      local n, e = s:read(120)
      check("udp.cosocket_timeout", n == nil and e == "timeout" and ba.clock() - t0 >= 115, n, e)
      local ok, err = pcall(ba.socket.udpcon, LO, echoPort)
      check("udp.cosocket_second_udpcon", ok and err == nil, ok, err)
      nextStep()
   end)
end)

step(function()
   -- A blocking UDP socket cannot be read on the dispatcher thread, and a
   -- TCP socket has no sendto.
   local u = ba.socket.udpcon()
   local ok, e = pcall(u.read, u, 10)
   check("udp.read_on_dispatcher_raises", not ok and tostring(e):find("dispatcher", 1, true), e)
   local ls = ba.socket.bind(0, {intf = LO})
   ok, e = pcall(ls.sendto, ls, "x", LO, 9)
   check("udp.sendto_tcp_raises", not ok and tostring(e):find("Not a DGRAM socket", 1, true), e)
   ls:close()
   -- closing a UDP socket from another thread ends a blocking read
   ba.thread.run(function()
      local t0 = ba.clock()
      local d, err = u:read()
      check("udp.closed_by_other_thread", d == nil and err == "socketclosed" and ba.clock() - t0 < 2000, d, err)
      nextStep()
   end)
   ba.timer(function() u:close() end):set(100, true)
end)

nextStep()
