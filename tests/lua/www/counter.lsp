<?lsp
-- test_http: `page` persists across requests; globals stay in the request
page.hits = (page.hits or 0) + 1
leaked = (leaked or 0) + 1
?>hits=<?= page.hits ?>
leaked=<?= leaked ?>
in_G=<?= tostring(rawget(app, "leaked")) ?>
