# expect: none
# about: a C project built with make -j4, then run
set -e
for i in 1 2 3 4 5 6; do printf 'int f%s(int x) { return x + %s; }\n' $i $i > f$i.c; done
printf 'int f1(int);\nint main(void) { return f1(-1); }\n' > main.c
cat > Makefile <<'MK'
OBJS = main.o f1.o f2.o f3.o f4.o f5.o f6.o
app: $(OBJS)
	cc -o $@ $(OBJS)
%.o: %.c
	cc -O2 -c $< -o $@
MK
make -s -j4
./app
