// test_http: a static script
"use strict";
document.title = "cosockd";
