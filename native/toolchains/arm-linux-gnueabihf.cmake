# Cross-compiling the ATECC608 addon for a 32-bit Raspberry Pi OS (armhf) on a Debian/Ubuntu host
# with `apt-get install g++-arm-linux-gnueabihf`:
#   npx cmake-js build --directory native --out build-armhf --arch arm \
#     --CDCMAKE_TOOLCHAIN_FILE="$PWD/native/toolchains/arm-linux-gnueabihf.cmake"
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CXX_COMPILER arm-linux-gnueabihf-g++)
