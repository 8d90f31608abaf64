/* ml_cost: the cost bound of ml/cost.c (docs/ml-spec.md §9) on hand-built
 * node records, without the oracle, so that qemu-mipsel is a reference too.
 *
 * Each case prints "<case> <node bound> <node work>" in hex (0x%016x), for
 * node `index` with inputs `ins`; tests/ml/test_cost_bound.py builds the same
 * nodes in Python and compares with opml.ml.cost, integer for integer, and
 * tests/expected/ml_cost.out pins the lines. The cases cover every op and
 * every term, the largest shapes the format allows (some far above the cap,
 * to exercise the 64-bit arithmetic) and the whole-model program's fixed
 * part. */
#include "ml.h"
#include "rt.h"

static struct ml_desc desc(uint32_t dtype, uint32_t rank, uint32_t d0, uint32_t d1, uint32_t d2)
{
    struct ml_desc d = { dtype, rank, { d0, d1, d2, 0 } };
    return d;
}

static void emit_case(const char *name, uint32_t index, struct ml_node *n, const struct ml_desc *x,
                      const struct ml_desc *b)
{
    const struct ml_desc *ins[2] = { x, b };
    n->n_inputs = b ? 2 : 1;
    print_str(name);
    print_char(' ');
    print_hex64(ml_node_bound(index, n, ins));
    print_char(' ');
    print_hex64(ml_node_work(n, ins));
    print_nl();
}

/* A node with op, output desc and params p[0..n_params); bias: a second key. */
static struct ml_node node(uint32_t op, struct ml_desc out, const int32_t *p, int n_params, int bias)
{
    struct ml_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.out = out;
    for (int j = 0; j < n_params; j++)
        n.p[j] = p[j];
    if (op == ML_DENSE || op == ML_CONV2D || op == ML_LUT || op == ML_SOFTMAX)
        n.tensor_key[0][0] = 3;
    if (bias)
        n.tensor_key[1][0] = 3;
    return n;
}

int main(void)
{
    struct ml_desc x, y;
    struct ml_node n;

    x = desc(ML_INT8, 1, 784, 0, 0);
    n = node(ML_DENSE, desc(ML_INT32, 1, 128, 0, 0), (const int32_t[]){ -3 }, 1, 1);
    emit_case("dense_784x128_bias", 0, &n, &x, 0);
    x = desc(ML_INT8, 3, 1, 1, 65793);
    n = node(ML_DENSE, desc(ML_INT32, 1, 1, 0, 0), (const int32_t[]){ 0 }, 1, 0);
    emit_case("dense_65793x1", 5, &n, &x, 0);
    x = desc(ML_INT8, 1, 4096, 0, 0);
    n = node(ML_DENSE, desc(ML_INT32, 1, 4096, 0, 0), (const int32_t[]){ 0 }, 1, 1);
    emit_case("dense_4096x4096_bias", 4095, &n, &x, 0);
    x = desc(ML_INT8, 1, 64, 0, 0);
    n = node(ML_DENSE, desc(ML_INT32, 1, 64, 0, 0), (const int32_t[]){ -128, 1 }, 2, 1);
    emit_case("dense_64x64_bias_row_bound", 1, &n, &x, 0);

    x = desc(ML_INT8, 3, 28, 28, 8);
    n = node(ML_CONV2D, desc(ML_INT32, 3, 28, 28, 16), (const int32_t[]){ 1, 3, 3, 1, 1, 1, 1, 1, 1 }, 9, 1);
    emit_case("conv_3x3_c8_oc16", 2, &n, &x, 0);
    n = node(ML_CONV2D, desc(ML_INT32, 3, 28, 28, 16), (const int32_t[]){ 1, 3, 3, 1, 1, 1, 1, 1, 1, 1 }, 10, 1);
    emit_case("conv_3x3_c8_oc16_row_bound", 2, &n, &x, 0);
    x = desc(ML_INT8, 3, 2048, 2048, 1);
    n = node(ML_CONV2D, desc(ML_INT32, 3, 2048, 2048, 1), (const int32_t[]){ 0, 1, 1, 1, 1 }, 5, 0);
    emit_case("conv_1x1_16mib", 0, &n, &x, 0);
    x = desc(ML_INT8, 3, 1, 1, 1);
    n = node(ML_CONV2D, desc(ML_INT32, 3, 1, 1, 7), (const int32_t[]){ 0, 4096, 1, 1, 1, 2047, 0, 2048, 0 }, 9, 1);
    emit_case("conv_kh4096", 9, &n, &x, 0);
    x = desc(ML_INT8, 3, 64, 64, 1024);
    n = node(ML_CONV2D, desc(ML_INT32, 3, 64, 64, 1024), (const int32_t[]){ 0, 2, 2, 1, 1, 1, 1, 0, 0 }, 9, 1);
    emit_case("conv_2x2_c1024_oc1024", 1, &n, &x, 0);

    x = desc(ML_INT32, 1, 1u << 22, 0, 0);
    n = node(ML_REQUANTIZE, desc(ML_INT8, 1, 1u << 22, 0, 0), (const int32_t[]){ 1, 1, 0, -128, 127 }, 5, 0);
    emit_case("requantize_4m", 100, &n, &x, 0);
    x = desc(ML_INT8, 2, 10, 100, 0);
    n = node(ML_ADD, x, (const int32_t[]){ 0, 1, 0, 1, 1, 0, -128, 127 }, 8, 0);
    emit_case("add_1000", 4095, &n, &x, &x);
    x = desc(ML_INT32, 2, 7, 3, 0);
    n = node(ML_RELU, x, (const int32_t[]){ -5 }, 1, 0);
    emit_case("relu_i32", 3, &n, &x, 0);
    x = desc(ML_INT8, 3, 4096, 4096, 1);
    y = desc(ML_INT8, 3, 2049, 2049, 1);
    n = node(ML_MAXPOOL, y, (const int32_t[]){ 2048, 2048, 1, 1 }, 4, 0);
    emit_case("maxpool_2048_on_4096", 0, &n, &x, 0);
    x = desc(ML_INT8, 3, 9, 9, 3);
    y = desc(ML_INT8, 3, 4, 4, 3);
    n = node(ML_AVGPOOL, y, (const int32_t[]){ 3, 2, 2, 2 }, 4, 0);
    emit_case("avgpool_3x2", 7, &n, &x, 0);
    x = desc(ML_INT32, 2, 4, 4, 0);
    n = node(ML_RESHAPE, desc(ML_INT32, 1, 16, 0, 0), 0, 0, 0);
    emit_case("reshape_i32", 1, &n, &x, 0);
    x = desc(ML_INT8, 1, 1u << 24, 0, 0);
    n = node(ML_ARGMAX, desc(ML_INT32, 1, 1, 0, 0), 0, 0, 0);
    emit_case("argmax_16m", 0, &n, &x, 0);
    x = desc(ML_INT8, 1, 300, 0, 0);
    n = node(ML_LUT, x, 0, 0, 0);
    emit_case("lut_300", 2, &n, &x, 0);
    x = desc(ML_INT8, 1, 32767, 0, 0);
    n = node(ML_SOFTMAX, x, 0, 0, 0);
    emit_case("softmax_32767", 1, &n, &x, 0);

    struct ml_header h = { 4096, desc(ML_INT8, 3, 8, 8, 1) };
    print_str("model_fixed_4096 ");
    print_hex64(ml_model_fixed_bound(&h));
    print_nl();
    h.node_count = 1;
    h.input = desc(ML_INT32, 1, 1u << 22, 0, 0);
    print_str("model_fixed_1 ");
    print_hex64(ml_model_fixed_bound(&h));
    print_nl();
    return 0;
}
