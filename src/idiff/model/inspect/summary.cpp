#include "idiff/model/inspect/summary.h"

#include "idiff/common/error.h"
#include "idiff/model/state_dict.h"

#include <cstdio>
#include <sstream>

namespace idiff {

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

namespace {

// Describes the children of one TimestepEmbedSequential and updates the resolution.
std::string describe_block(const TimestepEmbedSequentialImpl& block, int64_t* res) {
  std::ostringstream os;
  bool first = true;
  for (const auto& child : block.children()) {
    if (!first) os << " + ";
    first = false;
    if (auto* r = dynamic_cast<const ResBlockImpl*>(child.get())) {
      os << "ResBlock " << r->options().channels << "->" << r->out_channels();
      if (r->options().down) {
        os << " down";
        *res /= 2;
      } else if (r->options().up) {
        os << " up";
        *res *= 2;
      }
    } else if (auto* a = dynamic_cast<const AttentionBlockImpl*>(child.get())) {
      os << "Attention " << a->channels() << " (" << a->num_heads() << " heads)";
    } else if (auto* d = dynamic_cast<const DownsampleImpl*>(child.get())) {
      os << "Downsample " << (d->use_conv() ? "conv" : "avgpool");
      *res /= 2;
    } else if (auto* u = dynamic_cast<const UpsampleImpl*>(child.get())) {
      os << "Upsample " << (u->use_conv() ? "conv" : "nearest");
      *res *= 2;
    } else if (auto* c = dynamic_cast<const torch::nn::Conv2dImpl*>(child.get())) {
      os << "Conv2d " << c->options.in_channels() << "->" << c->options.out_channels();
    } else {
      os << child->name();
    }
  }
  return os.str();
}

void line(std::ostringstream& os, const std::string& name, const std::string& what, int64_t res,
          int64_t params) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "  %-18s %-46s %5s %12s\n", name.c_str(), what.c_str(),
                res > 0 ? (std::to_string(res) + "px").c_str() : "", with_commas(params).c_str());
  os << buf;
}

}  // namespace

std::string describe_unet(const UNetModelImpl& model, int64_t image_size) {
  const UNetOptions& o = model.options();
  std::ostringstream os;
  os << "layout (block, layers, resolution, parameters):\n";
  int64_t res = image_size;
  int64_t time_params = 0;
  for (const auto& item : model.named_children()) {
    if (item.key() == "time_embed" || item.key() == "label_emb") {
      const int64_t n = parameter_count(*item.value());
      time_params += n;
      line(os, item.key(),
           item.key() == "time_embed"
               ? str("Linear ", o.model_channels, "->", 4 * o.model_channels, ", SiLU, Linear")
               : str("Embedding ", o.num_classes, " classes"),
           0, n);
    }
  }
  for (size_t i = 0; i < model.input_blocks().size(); ++i) {
    const auto& b = model.input_blocks()[i];
    const int64_t at = res;
    const std::string what = describe_block(*b, &res);
    line(os, str("input_blocks.", i), what, at, parameter_count(*b));
  }
  line(os, "middle_block", describe_block(*model.middle_block(), &res), res,
       parameter_count(*model.middle_block()));
  for (size_t i = 0; i < model.output_blocks().size(); ++i) {
    const auto& b = model.output_blocks()[i];
    const int64_t at = res;
    const std::string what = describe_block(*b, &res);
    line(os, str("output_blocks.", i), what, at, parameter_count(*b));
  }
  for (const auto& item : model.named_children()) {
    if (item.key() == "out") {
      line(os, "out", str("GroupNorm32, SiLU, Conv2d ", o.model_channels, "->", o.out_channels),
           res, parameter_count(*item.value()));
    }
  }
  return os.str();
}

}  // namespace idiff
