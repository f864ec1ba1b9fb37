-- test_tls: TLS session resumption from the client side. Three connects
-- in a row, each in its own cosocket, to the same server with the same
-- client object; each exchanges a line (a TLS 1.3 ticket arrives after the
-- handshake, so the session is only complete once something was read).
-- The second connection calls sock:relsession() before it closes.
-- Records: "CONN <n> <key>=<value>..." (tab-separated), "RESUME DONE".
-- ARGS: caPemFile certFile keyFile [port]
--   without port: the server is this script's own (ba.tls.server made from
--   PEM text), an echo; with port: `openssl s_server -rev` there.
local caFile, certFile, keyFile, port = ...
port = math.tointeger(tonumber(port))

local function slurp(name)
   local f = assert(io.open(name))
   local d = f:read("a")
   f:close()
   return d
end

local reversing = port ~= nil
if not port then
   local server = ba.tls.server{cert = slurp(certFile), key = slurp(keyFile)}
   local ls = assert(ba.socket.bind(0, {shark = server, intf = "127.0.0.1"}))
   ls:event(function(l)
      while true do
         local s = l:accept()
         if not s then break end
         s:event(function(c)
            while true do
               local d = c:read()
               if not d or not c:write(d) then break end
            end
            c:close()
         end, "s")
      end
   end, "r")
   port = select(2, ls:sockname())
end

local client = ba.tls.client{ca = slurp(caFile)}

local function fmt(...)
   local out = {}
   for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
   -- one log record per line: show CR and LF as \r and \n
   return (table.concat(out, ","):gsub("\r", "\\r"):gsub("\n", "\\n"))
end

local function readLine(s)
   local buf = ""
   for _ = 1, 100 do
      local d, err = s:read(5000)
      if not d then return nil, err end
      buf = buf .. d
      if buf:find("\n", 1, true) then return buf end
   end
   return nil, "no newline"
end

local function conn(n)
   local fields = {"CONN", tostring(n)}
   local function add(k, v) fields[#fields + 1] = k .. "=" .. v end
   local s, err, why = ba.socket.connect("localhost", port, {shark = client, timeout = 5000})
   if not s then
      add("connect", "nil," .. fmt(err, why))
      return table.concat(fields, "\t")
   end
   add("connect", "ok")
   local msg = "resume test " .. n .. "\n"
   s:write(msg)
   local line, rerr = readLine(s)
   local want = reversing and msg:sub(1, -2):reverse() .. "\n" or msg
   add("data", line == want and "ok" or ("bad:" .. fmt(line, rerr)))
   add("resumed", fmt(s:isresumed()))
   add("trusted", fmt(s:trusted()))
   if n == 2 then add("relsession", fmt(s:relsession())) end
   add("close", fmt(s:close()))
   return table.concat(fields, "\t")
end

local n = 0
local function nextConn()
   n = n + 1
   if n > 3 then
      print("RESUME DONE")
      if not reversing then cosockd.exit(0) end
      return
   end
   ba.socket.event(function()
      local ok, rec = pcall(conn, n)
      print(ok and rec or ("CONN\t" .. n .. "\terror=" .. tostring(rec)))
      nextConn()
   end)
end
nextConn()
