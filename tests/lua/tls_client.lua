-- test_tls: seed 003's Example 11 pattern (ba.socket.connect with a shark
-- object) against local `openssl s_server -rev` peers, one per certificate.
-- For every target it connects to "localhost", sends a line, reads the
-- reversed line back and reports what sock:trusted(), sock:certificate()
-- and sock:cipher() say, as one record:
--   RESULT <label> <key>=<value>...   (tab-separated)
-- then "CLIENT DONE" after the last target.
-- ARGS: mode (cosocket | thread | toplevel) caPemFile label:port[:vport]...
-- Every target is tried twice, with a client object made with verify=false
-- (labels as given) and one made with verify=true (labels "v-<label>", on
-- vport when given).
local args = {...}
local mode, caFile = args[1], args[2]
local targets = {}
for i = 3, #args do
   local label, port, vport = args[i]:match("^([%w_-]+):(%d+):?(%d*)$")
   port = math.tointeger(tonumber(port))
   targets[#targets + 1] = {label = label, port = port, vport = math.tointeger(tonumber(vport)) or port}
end

local f = assert(io.open(caFile))
local caPem = f:read("a")
f:close()

local store = ba.create.certstore()
local added = store:addcert(caPem)
print("RESULT\tstore\tadded=" .. tostring(added))
local client = ba.create.sharkssl(store)
local vclient = ba.create.sharkssl(store, {verify = true})

local runs = {}
for _, t in ipairs(targets) do
   runs[#runs + 1] = {label = t.label, port = t.port, shark = client}
end
for _, t in ipairs(targets) do
   runs[#runs + 1] = {label = "v-" .. t.label, port = t.vport, shark = vclient}
end

local MSG = "hello from cosockd " .. mode .. "\n"

-- Read up to and including "\n" (s:read() returns one record at a time).
local function readLine(s)
   local buf = ""
   for _ = 1, 100 do
      local d, err, why = s:read(5000)
      if not d then return nil, err, why, buf end
      buf = buf .. d
      if buf:find("\n", 1, true) then return buf end
   end
   return nil, "no newline", nil, buf
end

local function fmt(...)
   local out = {}
   for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
   -- one log record per line: show CR and LF as \r and \n
   return (table.concat(out, ","):gsub("\r", "\\r"):gsub("\n", "\\n"))
end

-- Connect, write the line and query the connection: returns the socket (or
-- nil) and the record's fields so far.
local function connectAndQuery(r)
   local fields = {"RESULT", r.label}
   local function add(k, v) fields[#fields + 1] = k .. "=" .. v end
   local s, err, why = ba.socket.connect("localhost", r.port, {shark = r.shark, timeout = 5000})
   if not s then
      add("connect", "nil," .. fmt(err, why))
      return nil, fields
   end
   add("connect", "ok")
   add("write", fmt(s:write(MSG)))
   add("trusted", fmt(s:trusted()))
   add("trusted_localhost", fmt(s:trusted("localhost")))
   add("trusted_other", fmt(s:trusted("other.example")))
   local c, trustedCA = s:certificate()
   if type(c) == "table" then
      local san = type(c.san) == "table" and table.concat(c.san, "|") or tostring(c.san)
      add("cert", string.format("%s/%s/%s/%s/%s/%s", tostring(c.subject and c.subject.countryname),
         tostring(c.subject and c.subject.province), tostring(c.subject and c.subject.locality),
         tostring(c.subject and c.subject.organization), tostring(c.subject and c.subject.unit),
         tostring(c.subject and c.subject.commonname)))
      add("issuer_cn", tostring(c.issuer and c.issuer.commonname))
      add("san", san)
      add("dates", tostring(c.tzfrom) .. "|" .. tostring(c.tzto))
      add("trustedCA", tostring(trustedCA))
   else
      add("cert", "nil," .. fmt(trustedCA))
   end
   add("cipher", fmt((s:cipher())))
   return s, fields
end

-- Read the reversed line back and close; returns the whole record.
local function exchangeAndClose(s, fields)
   local line, rerr, rwhy = readLine(s)
   fields[#fields + 1] = "data=" .. (line and (line == MSG:sub(1, -2):reverse() .. "\n" and "reversed"
      or ("wrong:" .. fmt(line))) or ("nil," .. fmt(rerr, rwhy)))
   fields[#fields + 1] = "close=" .. tostring(s:close())
   return table.concat(fields, "\t")
end

local function runOne(r)
   local s, fields = connectAndQuery(r)
   if not s then return table.concat(fields, "\t") end
   return exchangeAndClose(s, fields)
end

local function report(r, ok, rec)
   print(ok and rec or ("RESULT\t" .. r.label .. "\terror=" .. tostring(rec)))
end

if mode == "cosocket" then
   -- One cosocket per connection (ba.socket.event), one after the other:
   -- connect runs asynchronously inside it.
   local i = 0
   local function nextRun()
      i = i + 1
      local r = runs[i]
      if not r then
         print("CLIENT DONE")
         return
      end
      ba.socket.event(function()
         report(r, pcall(runOne, r))
         nextRun()
      end)
   end
   nextRun()
elseif mode == "thread" then
   -- A pool thread: connect and the handshake block the job.
   ba.thread.run(function()
      for _, r in ipairs(runs) do report(r, pcall(runOne, r)) end
      print("CLIENT DONE")
   end)
elseif mode == "toplevel" then
   -- The script's own top-level code: connect blocks (with the handshake),
   -- write queues; reading is for cosockets, so each connected socket
   -- becomes an "s" cosocket that reads the answer. (Each run has an
   -- s_server of its own: s_server serves one connection at a time.)
   local pending = #runs
   local function oneDone()
      pending = pending - 1
      if pending == 0 then print("CLIENT DONE") end
   end
   for _, r in ipairs(runs) do
      local ok, s, fields = pcall(connectAndQuery, r)
      if not ok then
         report(r, false, s)
         oneDone()
      elseif not s then
         print(table.concat(fields, "\t"))
         oneDone()
      else
         s:event(function(sock)
            report(r, pcall(exchangeAndClose, sock, fields))
            oneDone()
         end, "s")
      end
   end
else
   error("unknown mode " .. tostring(mode))
end
