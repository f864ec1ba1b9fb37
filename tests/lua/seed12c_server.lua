-- Seed 003, Example 12c: a server that receives one message and then stops,
-- and (with ARG "12b") Example 12b's writer, run from a ba.timer because
-- LSP pages do not exist in cosockd, or (with "12b-thread") from a pool
-- thread, where an LSP page would run. ARGS: port ["12b"|"12b-thread"]
local port, mode = ...

-- ---- Example 12c, unchanged except the listen address -------------------
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

local s = require"testlib".listen(port) -- was: ba.socket.bind(8888)
s:event(accept)
-- -------------------------------------------------------------------------

if mode == "12b" or mode == "12b-thread" then
   local _, boundPort = s:sockname()
   local function page()
      -- ---- Example 12b (the LSP page's code), unchanged except the address
      local sock = ba.socket.connect("127.0.0.1",boundPort)
      -- Receive cosocket required, but not used
      sock:event(function(sock) trace(sock:read()) end, "s")
      while true do
         local ok,status=sock:write"hello"
         trace(ok,status)
         if not ok then
            if "number" == type(status) then
               -- status is now number of bytes in queue
               print("Socket queue full", status,sock:queuelen())
            else
               print("Socket error",status)
               assert("string" == type(status))
            end
            break -- exit
         end
      end
      -- ----------------------------------------------------------------------
   end
   if mode == "12b" then
      ba.timer(page):set(10, true)
   else
      ba.thread.run(page)
   end
end
