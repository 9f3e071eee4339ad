# Builds a Gleaner plugin component from C with Debian's clang, lld and
# wasi-libc, then `wasm-tools component new` with the WASI adapter.
#
# In your Makefile:
#     WORLD   := processor            # or flusher
#     SOURCES := myplugin.c
#     GLEANER_SDK ?= path/to/sdk/c
#     include $(GLEANER_SDK)/plugin.mk
#
# `make` writes plugin.wasm. Tools (override on the command line):
# CC (clang), WASM_TOOLS (wasm-tools), GLEANER (gleaner: writes the WASI
# adapter once, `gleaner plugin adapter`).

ifeq ($(origin CC),default)
CC := clang
endif
WASM_TOOLS ?= wasm-tools
GLEANER ?= gleaner
WORLD ?= processor
OUT ?= plugin.wasm
BUILD ?= build

WORLD_DEFINE := $(if $(filter flusher,$(WORLD)),-DGLEANER_FLUSHER,-DGLEANER_PROCESSOR)
SDK_CFLAGS := --target=wasm32-wasi -O2 -Wall -Wextra -Werror \
	-Wno-unused-parameter -I$(GLEANER_SDK) -I$(GLEANER_SDK)/gen $(WORLD_DEFINE)
SDK_SOURCES := $(GLEANER_SDK)/gleaner.c $(GLEANER_SDK)/gen/$(WORLD).c
ADAPTER := $(BUILD)/wasi_snapshot_preview1.reactor.wasm

$(OUT): $(BUILD)/core.wasm $(ADAPTER)
	$(WASM_TOOLS) component new $(BUILD)/core.wasm \
		--adapt wasi_snapshot_preview1=$(ADAPTER) -o $@

# The generated bindings are compiled without -Werror (not our code).
$(BUILD)/core.wasm: $(SOURCES) $(GLEANER_SDK)/gleaner.c $(GLEANER_SDK)/gleaner.h \
		$(GLEANER_SDK)/gen/$(WORLD).c $(GLEANER_SDK)/gen/$(WORLD).h | $(BUILD)
	$(CC) $(SDK_CFLAGS) $(CFLAGS) -c $(GLEANER_SDK)/gen/$(WORLD).c -Wno-error -o $(BUILD)/bindings.o
	$(CC) $(SDK_CFLAGS) $(CFLAGS) -mexec-model=reactor -o $@ $(SOURCES) $(GLEANER_SDK)/gleaner.c \
		$(BUILD)/bindings.o $(GLEANER_SDK)/gen/$(WORLD)_component_type.o $(LDFLAGS)

$(ADAPTER): | $(BUILD)
	$(GLEANER) plugin adapter --out $@

$(BUILD):
	mkdir -p $@

clean:
	rm -rf $(BUILD) $(OUT)

.PHONY: clean
