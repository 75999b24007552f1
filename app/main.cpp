#include <cstdio>
int main() { std::puts("switchboard " SB_VERSION); return 0; }
