// The global operator new in every form, counted per thread (test/support/heap_count.h).
#include "test/support/heap_count.h"

#include <cstddef>
#include <cstdlib>
#include <new>

namespace {
thread_local uint64_t g_allocations = 0;

// Every form comes here: null when the memory is not there. Over-aligned requests (what
// std::pmr::new_delete_resource() and alignas types ask for) take aligned_alloc, whose size
// must be a multiple of the alignment.
void* allocate(std::size_t n, std::size_t align = alignof(std::max_align_t)) {
  ++g_allocations;
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}

void* or_throw(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

std::size_t value(std::align_val_t al) { return static_cast<std::size_t>(al); }
}  // namespace

namespace sb::test {
uint64_t heap_allocations() { return g_allocations; }
}  // namespace sb::test

void* operator new(std::size_t n) { return or_throw(allocate(n)); }
void* operator new[](std::size_t n) { return or_throw(allocate(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
void* operator new(std::size_t n, std::align_val_t al) { return or_throw(allocate(n, value(al))); }
void* operator new[](std::size_t n, std::align_val_t al) { return or_throw(allocate(n, value(al))); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return allocate(n, value(al));
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return allocate(n, value(al));
}

// Every form of delete frees what malloc or aligned_alloc gave.
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
