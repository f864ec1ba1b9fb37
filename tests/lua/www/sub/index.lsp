<?lsp -- test_http: index.lsp comes before index.html in a directory ?>sub index.lsp at <?= request:uri() ?>
