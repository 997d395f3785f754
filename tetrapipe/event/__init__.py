"""What flows (the bottom layer): the Tetragon event model, decoding and unwrapping one input record,
the Envelope and Batch that carry it with its source position, and its tags.
"""
