<p>a code tag that is never closed</p>
<?lsp print("x")
