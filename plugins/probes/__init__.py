"""Neuron probe plugins."""
