SELECT version, checksum FROM wahook_migrations ORDER BY version
