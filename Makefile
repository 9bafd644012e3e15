# shardrouter - plain GNU make, out-of-tree builds under build/<mode>/.
#   make                 build everything (release: -O2 -g)
#   make test            install missing deps, build, run unit + integration tests
#   make check-asan      the same under ASan+UBSan (build/asan)
#   make demo / demo-stop, make bench, make install (PREFIX, DESTDIR)
#   make check-format    clang-format --dry-run on every C file

MODE    ?= release
BUILD   ?= build/$(MODE)
PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc

PKGS    := libevent libevent_pthreads libevent_openssl libpq libxxhash inih openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)
PGQUERY_LIBS := -lpg_query -lprotobuf-c

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wswitch-enum -Wvla
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude $(PKG_CFLAGS) -pthread
ifeq ($(MODE),asan)
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ALL_CFLAGS  = $(CFLAGS_COMMON) $(SAN) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(SAN) -pthread $(LDFLAGS)
LIBS    := $(PGQUERY_LIBS) $(PKG_LIBS) -lm

SHARDMAP_SRC := $(wildcard shardmap/*.c)
ROUTER_SRC   := $(filter-out router/main.c,$(wildcard router/*.c))
TOOLS_SRC    := $(wildcard tools/*.c)
UNIT_SRC     := $(wildcard tests/unit/test_*.c)
ITEST_SRC    := $(wildcard tests/integration/*.c)
BENCH_SRC    := $(wildcard bench/*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIBSHARDMAP := $(BUILD)/libshardmap.a
LIBROUTER   := $(BUILD)/librouter.a
ROUTER_BIN  := $(BUILD)/shardrouter
SHARDCTL    := $(BUILD)/shardctl
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
ITEST_BINS  := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(ITEST_SRC))
BENCH_BINS  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all test check-asan demo demo-stop bench bench-move bench-routing bench-scaleout install clean check-format deps tests
all: $(LIBSHARDMAP) $(LIBROUTER) $(if $(wildcard router/main.c),$(ROUTER_BIN)) \
     $(if $(TOOLS_SRC),$(SHARDCTL)) $(UNIT_BINS) $(ITEST_BINS) $(BENCH_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBSHARDMAP): $(call obj,$(SHARDMAP_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBROUTER): $(call obj,$(ROUTER_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $(if $^,$^,)

$(ROUTER_BIN): $(call obj,router/main.c) $(LIBROUTER) $(LIBSHARDMAP)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(SHARDCTL): $(call obj,$(TOOLS_SRC)) $(LIBSHARDMAP)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIBROUTER) $(LIBSHARDMAP)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

# test_move also tests shardctl's move code (decoding and apply decisions).
$(BUILD)/tests/unit/test_move: $(BUILD)/tests/unit/test_move.o \
    $(call obj,tools/move_db.c tools/move_apply.c tools/ctl.c) $(LIBROUTER) $(LIBSHARDMAP)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(LIBROUTER) $(LIBSHARDMAP)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIBROUTER) $(LIBSHARDMAP)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@tools/deps.sh

# The one test command: dependencies, build, then every unit and integration test.
test: deps
	$(MAKE) all
	BUILD=$(BUILD) tests/run.sh

check-asan:
	$(MAKE) MODE=asan test

demo: deps
	$(MAKE) all
	BUILD=$(BUILD) tools/demo.sh start

demo-stop:
	BUILD=$(BUILD) tools/demo.sh stop

bench: deps
	$(MAKE) all
	BUILD=$(BUILD) bench/run.sh

# Routing cost: instructions per statement (callgrind) and the extractor's share of
# the router's CPU under pgbench (perf).
bench-routing: deps
	$(MAKE) all
	BUILD=$(BUILD) bench/routing.sh

# The demo topology under a read-mostly mix: per-backend transaction counts.
bench-scaleout: deps
	$(MAKE) all
	BUILD=$(BUILD) bench/scaleout.sh

# The longer variant of t_move: one move of BENCH_MOVE_ROWS orders under pgbench.
bench-move: deps
	$(MAKE) all
	BUILD=$(BUILD) bench/move.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(ROUTER_BIN) $(SHARDCTL) $(DESTDIR)$(PREFIX)/bin/

check-format:
	clang-format --dry-run --Werror $(SHARDMAP_SRC) $(ROUTER_SRC) router/main.c $(TOOLS_SRC) \
	    $(UNIT_SRC) $(ITEST_SRC) $(wildcard include/*/*.h)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
