<?lsp
-- test_http: the request object, one "key=value" line per query
response:setcontenttype("text/plain; charset=utf-8")
local function show(k, v) print(k .. "=" .. tostring(v)) end
show("method", request:method())
show("uri", request:uri())
show("url", request:url())
show("version", request:version())
show("header(x-test)", request:header("x-test"))
show("header(X-TEST)", request:header("X-TEST"))
show("header(missing)", request:header("X-Missing"))
local fromTable
for k, v in pairs(request:header()) do
   if type(k) == "string" and k:lower() == "x-test" then fromTable = v end
end
show("header().x-test", fromTable)
local d = request:data()
local keys = {}
for k in pairs(d) do keys[#keys + 1] = k end
table.sort(keys)
show("data.keys", table.concat(keys, ","))
for _, k in ipairs(keys) do show("data." .. k, d[k]) end
show("data(q)", request:data("q"))
show("data(missing)", request:data("missing"))
show("cookie(theme)", request:cookie("theme"))
show("cookie(session)", request:cookie("session"))
show("cookie(none)", request:cookie("none"))
local addr, port = request:peername()
show("peer", tostring(addr) .. " " .. tostring(port))
show("user", request:user())
?>
