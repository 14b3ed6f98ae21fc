"""Files to and from specs: model and GPU files, scenario files, Megatron-LM arguments, atomic writes."""
