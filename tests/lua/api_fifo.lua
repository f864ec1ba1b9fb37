-- test_api: three cosockets write numbered records to one connected socket
-- (BA-API §3.4: FIFO, writers yield while the queue is full).
-- Record: writer id (1 byte), sequence (4), payload length (4), then the
-- payload: one letter, chosen from id and sequence, repeated.
-- ARGS: host port records-per-writer
local host, port, records = ...
port = math.tointeger(tonumber(port))
records = math.tointeger(tonumber(records))
local WRITERS = 3

local function payloadLen(id, seq) return 1 + (seq * 1103 + id * 331) % 3072 end

local function record(id, seq)
   local n = payloadLen(id, seq)
   local letter = string.char(65 + (id * 7 + seq) % 26)
   return ba.socket.h2n(1, id) .. ba.socket.h2n(4, seq) .. ba.socket.h2n(4, n) .. letter:rep(n)
end

local function writer(self, sink, id)
   local yields = 0
   for seq = 1, records do
      local t0 = ba.clock()
      local ok, err = sink:write(record(id, seq))
      if not ok then
         trace(string.format("writer %d: write %d failed: %s", id, seq, tostring(err)))
         return
      end
      if err == nil then yields = yields + 1 end -- resumed after a wait: one value
   end
   trace(string.format("writer %d done, waited %d times", id, yields))
end

ba.socket.event(function(sock)
   local s, err = ba.socket.connect(host, port)
   if not s then
      trace("connect failed: " .. tostring(err))
      return
   end
   for id = 1, WRITERS do
      ba.socket.event(writer, sock, id)
   end
   while true do
      local data, e = sock:read()
      if not data then
         trace("reader: " .. tostring(e))
         break
      end
      trace("peer says: " .. data)
   end
end)
