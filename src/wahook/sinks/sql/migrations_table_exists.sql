SELECT to_regclass('wahook_migrations') IS NOT NULL
