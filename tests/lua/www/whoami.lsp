public user=<?= tostring(request:user()) ?>
