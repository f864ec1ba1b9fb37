<p>a page that does not compile</p>
<?lsp if then ?>
