private user=<?= tostring(request:user()) ?>
