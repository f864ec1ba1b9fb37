<p>before the error</p>
<?lsp
local t = nil
trace("error.lsp: about to fail")
local x = t.field -- line 5: indexing nil
?>
<p>never sent: <?= x ?></p>
