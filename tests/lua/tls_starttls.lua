-- test_tls: STARTTLS with sock:upgrade. The peer (Python) speaks a plain
-- line protocol first ("220 ready", "STARTTLS", "220 go ahead"), then TLS
-- on the same connection. Records (tab-separated):
--   STEP <name> <values>   as the exchange goes
--   STARTTLS DONE          at the end
-- ARGS: port caPemFile mode (cosocket | thread)
local port, caFile, mode = ...
port = math.tointeger(tonumber(port))
local client = ba.tls.client{ca = caFile}

local function fmt(...)
   local out = {}
   for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
   -- one log record per line: show CR and LF as \r and \n
   return (table.concat(out, ","):gsub("\r", "\\r"):gsub("\n", "\\n"))
end

local function step(name, ...)
   print("STEP\t" .. name .. "\t" .. fmt(...))
end

local function readLine(s)
   local buf = ""
   for _ = 1, 100 do
      local d, err, why = s:read(5000)
      if not d then return nil, err, why end
      buf = buf .. d
      if buf:find("\n", 1, true) then return buf end
   end
   return nil, "no newline"
end

local function run()
   local s, err = ba.socket.connect("localhost", port, {timeout = 5000})
   step("connect", s and "ok" or "nil", err)
   if not s then return end
   step("plain_cipher", s:cipher())
   step("greeting", readLine(s))
   step("write_starttls", s:write("STARTTLS\r\n"))
   step("go_ahead", readLine(s))
   step("upgrade", s:upgrade(client))
   step("cipher_type", type(s:cipher()))
   step("trusted_localhost", s:trusted("localhost"))
   step("trusted_default", s:trusted())
   step("write_ping", s:write("ping over tls\n"))
   step("pong", readLine(s))
   step("upgrade_again", s:upgrade(client))
   step("close", s:close())
   step("upgrade_closed", s:upgrade(client))
end

if mode == "cosocket" then
   ba.socket.event(function()
      local ok, e = pcall(run)
      if not ok then step("error", e) end
      print("STARTTLS DONE")
   end)
elseif mode == "thread" then
   ba.thread.run(function()
      local ok, e = pcall(run)
      if not ok then step("error", e) end
      print("STARTTLS DONE")
   end)
else
   error("unknown mode " .. tostring(mode))
end
