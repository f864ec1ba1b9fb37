-- Helpers shared by the test scripts (found through LUA_PATH, which the
-- integration harness points at this directory). Not part of any seed.
local M = {}

-- A listening socket on 127.0.0.1:port (0: any free port). Traces
-- "listening on ADDR:PORT": the harness reads the real port from that line.
function M.listen(port)
   local s, err, why = ba.socket.bind(math.tointeger(tonumber(port)) or 0, {intf = "127.0.0.1"})
   if not s then error(string.format("cannot listen: %s (%s)", err, why), 0) end
   local addr, p = s:sockname()
   trace(string.format("listening on %s:%d", addr, p))
   return s
end

-- Accept on 127.0.0.1:port and call onConnection(sock) for each accepted
-- (still blocking, not yet cosocket) socket. Returns the listen socket.
function M.acceptEach(port, onConnection)
   local ls = M.listen(port)
   ls:event(function(l)
      while true do
         local s = l:accept()
         if not s then break end
         onConnection(s)
      end
   end)
   return ls
end

-- For seed code written as "local sock=getMyServerSocket() ...": runs
-- body(getMyServerSocket) once per accepted connection, where
-- getMyServerSocket() returns that connection (example 3.b's accept loop).
function M.serveSeed(port, body)
   return M.acceptEach(port, function(s)
      body(function() return s end)
   end)
end

-- A loopback server inside the script: each accepted socket runs the
-- current server.handler(sock) as an "s" cosocket. server.port is its
-- port, server.listener its listen socket.
function M.handlerServer()
   local ls = M.listen(0)
   local server = {listener = ls, port = select(2, ls:sockname())}
   ls:event(function(l)
      while true do
         local s = l:accept()
         if not s then break end
         s:event(server.handler, "s")
      end
   end)
   return server
end

-- Report one check as "CHECK <name> ok" or "CHECK <name> FAIL <why>".
function M.check(name, ok, ...)
   if ok then
      trace("CHECK " .. name .. " ok")
   else
      local why = {}
      for i = 1, select("#", ...) do why[#why + 1] = tostring((select(i, ...))) end
      trace("CHECK " .. name .. " FAIL " .. table.concat(why, " "))
   end
   return ok
end

-- Checks that run one after the other. steps:add(fn) queues fn, which
-- calls steps:next() when it is done; steps:job(body) queues a body that
-- runs on a pool thread (an error in it is reported as a failed check).
-- Each step starts from a timer, on the dispatcher thread outside any
-- cosocket, whoever called next(). After the last: "CHECKS DONE".
function M.steps()
   local S = {list = {}, ix = 0}
   function S:add(fn) self.list[#self.list + 1] = fn end
   function S:next()
      self.ix = self.ix + 1
      local fn = self.list[self.ix]
      if not fn then
         trace("CHECKS DONE")
         return
      end
      ba.timer(fn):set(1, true)
   end
   function S:job(body)
      self:add(function()
         ba.thread.run(function()
            local ok, err = pcall(body)
            if not ok then trace("CHECK step" .. self.ix .. " FAIL " .. tostring(err)) end
            self:next()
         end)
      end)
   end
   return S
end

return M
