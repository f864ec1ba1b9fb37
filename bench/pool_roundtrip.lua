-- bench/pool_roundtrip.lua: what a blocking socket call on a pool thread
-- costs next to the same call in a cosocket. A job and then a cosocket each
-- make N write+read round trips to an "s" echo cosocket on loopback, one
-- at a time. Usage: cosockd [--backend=B] bench/pool_roundtrip.lua [N]
local N = math.tointeger(tonumber((...))) or 20000
local ls = ba.socket.bind(0, {intf = "127.0.0.1"})
local _, port = ls:sockname()
ls:event(function(l)
   while true do
      local s = l:accept()
      if not s then break end
      s:event(function(x)
         while true do
            local d = x:read()
            if not d then break end
            x:write(d)
         end
      end, "s")
   end
end)

local function rounds(sock)
   local t0 = ba.clock()
   for _ = 1, N do
      sock:write("ping")
      sock:read()
   end
   return ba.clock() - t0
end

ba.thread.run(function()
   local s = ba.socket.connect("127.0.0.1", port)
   local dt = rounds(s)
   s:close()
   print(string.format("pool thread: %d round trips in %d ms: %.1f us each", N, dt, dt * 1000 / N))
   ba.socket.event(function()
      local c = ba.socket.connect("127.0.0.1", port)
      local dt2 = rounds(c)
      c:close()
      print(string.format("cosocket: %d round trips in %d ms: %.1f us each", N, dt2, dt2 * 1000 / N))
      ls:close()
   end)
end)
