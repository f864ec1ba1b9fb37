<!-- test_http: text, <?lsp ?> code, both expression forms and print -->
<html><body>
<?lsp local name = "world" ?>
<p>Hello <?= name ?>!</p>
<p>Sum: <?lsp= 1 + 2 ?></p>
<p><?lsp for i = 1, 3 do ?>item <?= i ?>;<?lsp end ?></p>
<?lsp print("printed", 42, nil, true) ?>
<p>Table: <?= #{1, 2, 3} ?> Str: <?lsp= "a" .. "b" ?></p>
</body></html>
