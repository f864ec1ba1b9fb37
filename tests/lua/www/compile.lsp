<?lsp
-- test_http: counts compilations: one new chunk function per compile
local f = debug.getinfo(1, "f").func
app.compile_seen = app.compile_seen or setmetatable({}, {__mode = "k"})
if not app.compile_seen[f] then
   app.compile_seen[f] = true
   app.compile_count = (app.compile_count or 0) + 1
end
?>version=1 compiles=<?= app.compile_count ?>
