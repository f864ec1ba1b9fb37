-- Seed 003, Example 12a: cosocket A writes a large file to socket B while
-- cosocket B reads. ARGS: host port dir (dir holds Large-Firmware.bin)
local host, port, dir = ...
port = math.tointeger(tonumber(port))

-- Not in the seed: in the original product `io` here is the application's
-- IO object (ba.openio), whose files read in blocks. This stand-in opens
-- files in DIR and reads them 16 KiB at a time.
local io = {
   open = function(self, name)
      local f = assert(_G.io.open(dir .. "/" .. name, "rb"))
      return {
         read = function() return f:read(16384) end,
         close = function() f:close() end,
      }
   end,
}

-- ---- Example 12a, unchanged except the address --------------------------
local function cosocketA(sockA, sockB) -- SockA not connected
   local fp = io:open"Large-Firmware.bin"
   while true do
      local data = fp:read()
      if not data then break end -- EOF
      sockB:write(data)
      -- sockA:read(300) -- Enable for send throttling
   end
   fp:close()
end

local function cosocketB(sockB, address, port)
   ba.socket.connect(address, port) -- Returns sockB or nil
   ba.socket.event(cosocketA, sockB)
   while true do
      local data = sockB:read()
      print(data)
      if not data then break end
   end
end

ba.socket.event(cosocketB, host, port)
