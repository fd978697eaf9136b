# expect: none
# about: a C project of 240 files built with make -j2, then run
set -e
mkdir -p src
for i in $(seq 1 240); do
  printf '#include "all.h"\nint f%s(int x) { return x + %s; }\n' "$i" "$i" > "src/f$i.c"
done
{ for i in $(seq 1 240); do printf 'int f%s(int);\n' "$i"; done; } > src/all.h
printf '#include "all.h"\nint main(void) { return f1(-1); }\n' > src/main.c
cat > Makefile <<'MK'
SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:.c=.o)
app: $(OBJS)
	cc -o $@ $(OBJS)
src/%.o: src/%.c src/all.h
	cc -O1 -c $< -o $@
MK
make -s -j2
./app
