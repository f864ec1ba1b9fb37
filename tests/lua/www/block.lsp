<?lsp
-- test_http: a page that blocks its pool thread for ?ms= milliseconds
local ms = math.tointeger(tonumber(request:data("ms"))) or 300
local tag = request:data("tag") or "-"
trace("BLOCK START " .. tag .. " " .. ms)
ba.sleep(ms)
trace("BLOCK END " .. tag)
print("slept", ms, tag)
?>
