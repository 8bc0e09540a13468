# Cross-compiling the ATECC608 addon for a 64-bit Raspberry Pi OS (arm64) on a Debian/Ubuntu host
# with `apt-get install g++-aarch64-linux-gnu`:  npm run build:native:arm64
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
