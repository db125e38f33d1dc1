package operator

// Tests hash with 8 MiB instead of 64 MiB: the race detector makes argon2id
// several times slower, and the parameters under test are the same code.
func init() { argonMemory = 8 * 1024 }
