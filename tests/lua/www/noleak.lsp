leaked=<?= tostring(leaked) ?> page.hits=<?= tostring(page.hits) ?>
