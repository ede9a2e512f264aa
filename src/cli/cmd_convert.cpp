// `idiff convert IN OUT`: copies the tensors of a checkpoint into another format, chosen
// by OUT's extension (.pt/.pth, .safetensors, .npz); IN's format is recognised by content.
#include "command.h"

#include "idiff/common/filesystem.h"
#include "idiff/io/tensor_file.h"
#include "idiff/model/inspect/summary.h"

#include <iostream>

namespace idiff::cli {
namespace {

struct ConvertArgs {
  std::string in, out;
};

void setup(CLI::App& sub) {
  auto a = std::make_shared<ConvertArgs>();
  sub.add_option("in", a->in, "checkpoint to read (.pt, .pth, .safetensors, .npz)")->required();
  sub.add_option("out", a->out, "file to write; the format follows the extension")->required();
  sub.callback([a] {
    const TensorFileKind out_kind = tensor_file_kind(a->out);  // refuse a bad name before reading
    check_output_file(a->out, "out");
    const TensorMap tensors = load_tensor_file(a->in);
    save_tensor_file(a->out, tensors);
    int64_t total = 0;
    for (const auto& [name, t] : tensors) total += t.numel();
    std::cout << "wrote " << a->out << " (" << tensor_file_kind_name(out_kind)
              << "): " << tensors.size() << " tensors, " << with_commas(total) << " elements\n";
  });
}

const bool registered = register_command(
    {"convert", "convert a checkpoint between .pt, .safetensors and .npz", 91, setup});

}  // namespace
}  // namespace idiff::cli
