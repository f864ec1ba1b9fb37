-- test_api: an echo server with misbehaviours on demand.
--   connection number FAILAT (in accept order) raises an error on its
--   first message;
--   a message "YIELD" makes the handler call coroutine.yield() itself;
--   after a message "DEADREAD", a failed read is followed by a second read
--   of the dead socket (which must raise "Invalid op").
-- Every failed read or write is traced as "conn N read|write failed: ERR".
-- ARGS: port failAt
local port, failAt = ...
failAt = math.tointeger(tonumber(failAt)) or -1

local function handler(sock, id)
   local deadread = false
   while true do
      local data, err = sock:read()
      if not data then
         trace(string.format("conn %d read failed: %s", id, err))
         if deadread then
            trace(string.format("conn %d reading again", id))
            sock:read()
            trace(string.format("conn %d second read returned", id))
         end
         return
      end
      if id == failAt then error("deliberate failure in connection " .. id) end
      if data == "YIELD" then coroutine.yield() end
      if data == "DEADREAD" then deadread = true end
      local ok, werr = sock:write(data)
      if not ok then
         trace(string.format("conn %d write failed: %s", id, werr))
         return
      end
   end
end

local n = 0
require"testlib".acceptEach(port, function(s)
   n = n + 1
   s:event(handler, "s", n)
end)
